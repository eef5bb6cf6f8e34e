"""Translations: every user-facing sentence goes through :func:`tr`, in one context.

``tr("...")`` is ``QCoreApplication.translate("SlimDiffSR", "...")``; ``scripts/update_translations.sh``
collects the strings into ``i18n/slimdiffsr.ts`` with ``pylupdate5`` and compiles ``.qm`` files
with ``lrelease``. :func:`install_translator` loads ``i18n/slimdiffsr_<locale>.qm`` for QGIS's
user interface language when the plugin starts. Sentences with values use ``"{}".format`` on the
translated text, never f-strings, so translators see the whole sentence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CONTEXT = "SlimDiffSR"
I18N_DIR = Path(__file__).resolve().parent / "i18n"


def tr(text: str) -> str:
    """The translation of ``text`` for the current language (``text`` itself without Qt)."""
    try:
        from qgis.PyQt.QtCore import QCoreApplication
    except ImportError:  # imported outside QGIS (tools, docs): English
        return text
    return QCoreApplication.translate(CONTEXT, text)


def qgis_locale() -> str:
    """QGIS's user interface locale, e.g. 'de' or 'pt_BR' (the system's when not overridden)."""
    from qgis.core import QgsSettings
    from qgis.PyQt.QtCore import QLocale

    value = QgsSettings().value("locale/userLocale", "") or ""
    return str(value) or QLocale.system().name()


def install_translator(locale: str | None = None, directory: Path = I18N_DIR) -> Any:
    """Load the best .qm for ``locale`` (full name, then language) into the application.

    Returns the installed QTranslator (keep it: Qt does not own it), or None when there is no
    translation for that language, which is the normal case for English.
    """
    from qgis.PyQt.QtCore import QCoreApplication, QTranslator

    locale = locale or qgis_locale()
    for name in dict.fromkeys((locale, locale.split("_")[0])):
        qm = directory / f"slimdiffsr_{name}.qm"
        if qm.is_file():
            translator = QTranslator()
            if translator.load(str(qm)):
                QCoreApplication.installTranslator(translator)
                return translator
    return None


def remove_translator(translator: Any) -> None:
    if translator is not None:
        from qgis.PyQt.QtCore import QCoreApplication

        QCoreApplication.removeTranslator(translator)
