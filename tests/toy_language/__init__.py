"""A toy language, test-only: the proof that a language is one folder plus one registry line.

Everything "rpn" needs lives in this folder; the service knows it only as one more entry
in the languages it is given (`EmbeddedServer(..., (*standard_languages(), RpnLanguage()))`).
"""

from tests.toy_language.language import RPN_ENUM, RpnLanguage

__all__ = ["RPN_ENUM", "RpnLanguage"]
