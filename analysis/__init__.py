"""Circuit discovery, model-agnostic: graph, attribution, circuits, faithfulness, export."""
