"""Config modules (see cfgs/__init__.py)."""
