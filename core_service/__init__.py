"""The DevStream core: plugin host, toolchain engine, data pipelines, API and the dtm CLI."""

__version__ = "0.1.0"
