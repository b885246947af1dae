"""Errors whose messages name the settings that fix them, spelled for whoever called: a keyword or a flag."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["SettingsError", "as_keyword"]

#: Spells one setting for a message: ``(parameter name, value) -> text``.
Spelling = Callable[[str, object], str]


def as_keyword(name: str, value: object) -> str:
    """A setting as a Python caller writes it: ``out_dir=...``, ``resume=True``."""
    return f"{name}=..." if value is ... else f"{name}={value}"


class SettingsError(Exception):
    """An error whose message names parameters of the call (``{out_dir}`` in ``message``) as fields.

    ``str(err)`` spells them as keywords; a front end such as the command line calls
    :meth:`spelled` with its own spelling (``--out-dir``) instead of rewriting the text.

    Example:
        >>> err = SettingsError("nothing to resume; start without {resume}", resume=True)
        >>> str(err)
        'nothing to resume; start without resume=True'
        >>> err.spelled(lambda name, value: "--" + name)
        'nothing to resume; start without --resume'
    """

    def __init__(self, message: str, **settings: object) -> None:
        self.message = message
        self.settings = settings
        super().__init__(self.spelled(as_keyword))

    def spelled(self, spell: Spelling) -> str:
        """The message with each setting it names written by ``spell``."""
        text = self.message
        for name, value in self.settings.items():
            text = text.replace("{" + name + "}", spell(name, value))
        return text

    def __reduce__(self):
        return type(self)._rebuilt, (self.message, self.settings)

    @classmethod
    def _rebuilt(cls, message: str, settings: dict[str, object]) -> SettingsError:
        return cls(message, **settings)
