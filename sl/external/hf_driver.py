"""The original code's name for the Hugging Face Hub helpers (`sl.external.hf_hub`)."""

from sl.external.hf_hub import looks_like_path, push_to_hub, resolve_model_path

__all__ = ["looks_like_path", "push_to_hub", "resolve_model_path"]
