"""Foundations every part may import: the user-facing error type, the tag grammar and prompt tokens.

Nothing here does I/O or imports another ``masksearch`` part, so importing it never loads the
judge, an HTTP client or torch.
"""
