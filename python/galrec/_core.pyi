"""Type stubs of the compiled extension ``galrec._core`` (Rust, PyO3)."""

__all__ = ["__version__", "build_info"]

__version__: str

def build_info() -> dict[str, str]:
    """Version, build profile ("release" or "debug"), target triple, architecture and OS."""
