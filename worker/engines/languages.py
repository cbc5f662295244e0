"""Language codes: the API speaks BCP-47-ish ISO 639-1 ('es', 'pt-BR'); engines have their own."""

from __future__ import annotations

# ISO 639-1 -> ISO 639-3 as Apertium names its pairs.
APERTIUM_CODES = {
    "en": "eng", "es": "spa", "ca": "cat", "fr": "fra", "pt": "por", "it": "ita", "gl": "glg",
    "de": "deu", "oc": "oci", "eo": "epo", "an": "arg", "ast": "ast", "sc": "srd",
}

# ISO 639-1 -> FLORES-200 codes used by NLLB.
NLLB_CODES = {
    "en": "eng_Latn", "es": "spa_Latn", "ca": "cat_Latn", "fr": "fra_Latn", "pt": "por_Latn", "it": "ita_Latn",
    "de": "deu_Latn", "nl": "nld_Latn", "pl": "pol_Latn", "ru": "rus_Cyrl", "uk": "ukr_Cyrl", "ja": "jpn_Jpan",
    "zh": "zho_Hans", "ko": "kor_Hang", "ar": "arb_Arab", "hi": "hin_Deva", "tr": "tur_Latn", "sv": "swe_Latn",
}


def base_language(code: str) -> str:
    return code.split("-")[0].lower()
