"""One-line error messages for status lines, health rows and logs."""


def one_line(exc: BaseException, limit: int | None = None) -> str:
    """``exc``'s message on one line (whitespace collapsed), else its type's name.

    Args:
        exc: the exception to describe.
        limit: cut the message to at most this many characters (None: keep it whole).
    """
    text = " ".join(str(exc).split())
    if limit is not None:
        text = text[:limit]
    return text or type(exc).__name__
