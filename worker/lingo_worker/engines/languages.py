"""Language codes: the API speaks BCP-47-ish ISO 639-1 ('es', 'pt-BR'); engines have their own."""

from __future__ import annotations

# ISO 639-3 (and a few older codes) -> ISO 639-1, for the codes Apertium names its modes with
# ('eng-spa', 'es-pt', 'nno-nob'). Languages without a two-letter code keep three letters.
ISO639_3_TO_1 = {
    "eng": "en", "spa": "es", "cat": "ca", "fra": "fr", "por": "pt", "ita": "it", "glg": "gl", "deu": "de",
    "oci": "oc", "epo": "eo", "arg": "an", "srd": "sc", "eus": "eu", "ron": "ro", "rus": "ru", "ukr": "uk",
    "swe": "sv", "dan": "da", "nno": "nn", "nob": "nb", "isl": "is", "mkd": "mk", "bul": "bg", "afr": "af",
    "nld": "nl", "ind": "id", "zlm": "ms", "hin": "hi", "urd": "ur", "bel": "be", "pol": "pl",
    "slv": "sl", "ast": "ast", "frp": "frp", "szl": "szl", "hbs": "sh",
}
# A pair without a mode of its own is translated through one of these (rule-based pairs are
# densest around Spanish, Catalan and English).
PIVOT_LANGUAGES = ("es", "ca", "en")

# ISO 639-1 -> FLORES-200 codes used by NLLB.
NLLB_CODES = {
    "en": "eng_Latn", "es": "spa_Latn", "ca": "cat_Latn", "fr": "fra_Latn", "pt": "por_Latn", "it": "ita_Latn",
    "de": "deu_Latn", "nl": "nld_Latn", "pl": "pol_Latn", "ru": "rus_Cyrl", "uk": "ukr_Cyrl", "ja": "jpn_Jpan",
    "zh": "zho_Hans", "ko": "kor_Hang", "ar": "arb_Arab", "hi": "hin_Deva", "tr": "tur_Latn", "sv": "swe_Latn",
}


def base_language(code: str) -> str:
    return code.split("-")[0].lower()


def iso639_1(code: str) -> str | None:
    """'eng' or 'en' -> 'en'; None for what is no language code (e.g. 'Cyrl')."""
    code = code.lower()
    if len(code) == 2:
        return code
    return ISO639_3_TO_1.get(code)
