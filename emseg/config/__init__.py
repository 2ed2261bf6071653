"""Configuration: the params.yaml schema, the defaults several layers share, and where the pipeline keeps its data."""
