"""Task distributions and class-indexed data sources that feed wtl_tf's episode pipelines."""
