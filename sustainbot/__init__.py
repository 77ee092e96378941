"""SustainBot: governed AI workflows that write JSONL governance events."""

__version__ = "0.1.0"
