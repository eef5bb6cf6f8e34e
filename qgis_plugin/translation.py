"""Translations: every user-facing sentence goes through :func:`tr`, in one context.

``tr("...")`` is ``QCoreApplication.translate("@default", "...")``: ``pylupdate5`` files calls of a
plain ``tr`` function under the context ``@default``, so the two agree. Sentences with values use
``tr("... {} ...").format(...)``, never f-strings, so translators see the whole sentence.

Update the template and build a language (Debian: pyqt5-dev-tools, qttools5-dev-tools)::

    cd qgis_plugin && pylupdate5 -noobsolete $(git ls-files '*.py' | grep -v protocol.py) \
        -ts i18n/slimdiffsr.ts
    cp i18n/slimdiffsr.ts i18n/slimdiffsr_de.ts   # translate it with Qt Linguist, then
    lrelease i18n/slimdiffsr_de.ts -qm i18n/slimdiffsr_de.qm

:func:`install_translator` loads ``i18n/slimdiffsr_<locale>.qm`` for QGIS's user interface
language when the plugin starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CONTEXT = "@default"  # where pylupdate5 puts free tr() calls
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
