"""Languages of the web interface: Babel's gettext catalogues in custody/web/locale.

Chosen by `?lang=`, then the `custody_lang` cookie, then Accept-Language; English otherwise.
"""

from __future__ import annotations

from pathlib import Path

from babel import Locale
from babel.support import NullTranslations, Translations
from starlette.requests import Request

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
LANGUAGES = ("en", "ar")
RTL = frozenset({"ar"})
COOKIE = "custody_lang"
NAMES = {"en": "English", "ar": "العربية"}


def translations(language: str) -> NullTranslations:
    return Translations.load(str(LOCALE_DIR), [language], DOMAIN)


def asked(request: Request) -> str | None:
    """A language the request asks to switch to (`?lang=`), if it is one we have."""
    wanted = request.query_params.get("lang")
    return wanted if wanted in LANGUAGES else None


def language_of(request: Request) -> str:
    if chosen := asked(request):
        return chosen
    if (kept := request.cookies.get(COOKIE)) in LANGUAGES:
        return str(kept)
    header = request.headers.get("accept-language", "")
    preferred = []
    for part in header.split(","):
        tag = part.split(";")[0].strip().replace("-", "_")
        if tag and len(tag) < 20:
            preferred.append(tag)
    found = Locale.negotiate(preferred, list(LANGUAGES), sep="_") if preferred else None
    return found.language if found is not None else "en"


def direction(language: str) -> str:
    return "rtl" if language in RTL else "ltr"
