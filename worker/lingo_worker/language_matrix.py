"""Which translations the CPU profile serves, computed from the engines installed here.

A pair (source, target) is served when speech recognition knows the source, Apertium has a
route (direct, or through a pivot language) whose output for a probe sentence is not empty,
and speech synthesis has a voice for the target. The result is written to api/lingo_api/languages.json
(`python -m lingo_worker.language_matrix --write`), where the facade and the operator read it
to refuse an unsupported pair at create; a test recomputes it and compares, so the committed
matrix cannot drift from what the worker image installs (images/worker.Dockerfile's
DEBIAN_PACKAGES, which hack/setup.sh installs too).
"""

from __future__ import annotations

import argparse
import json
import sys

from lingo_api.languages import MATRIX_FILE, canonical

from .engines.registry import Engines, build_engines

# One sentence per source language that Apertium has pairs for, to probe each route with.
PROBES = {
    "en": "Hello my friend, the weather is very nice today.",
    "es": "Hola amigo, hoy hace muy buen tiempo.",
    "ca": "Hola amic, avui fa molt bon temps.",
    "fr": "Bonjour mon ami, il fait très beau aujourd'hui.",
    "pt": "Olá meu amigo, hoje está muito bom tempo.",
    "it": "Ciao amico mio, oggi il tempo è molto bello.",
    "gl": "Ola meu amigo, hoxe fai moi bo tempo.",
    "eo": "Saluton mia amiko, la vetero estas tre bela hodiaŭ.",
    "eu": "Kaixo lagun, gaur eguraldi oso ona dago.",
    "ro": "Salut prietene, vremea este foarte frumoasă astăzi.",
    "ru": "Привет, мой друг, сегодня очень хорошая погода.",
    "uk": "Привіт, мій друже, сьогодні дуже гарна погода.",
    "sv": "Hej min vän, vädret är mycket fint idag.",
    "da": "Hej min ven, vejret er meget godt i dag.",
    "nb": "Hei min venn, været er veldig fint i dag.",
    "nn": "Hei venen min, vêret er veldig fint i dag.",
    "is": "Halló vinur minn, veðrið er mjög gott í dag.",
    "mk": "Здраво пријателе, времето е многу убаво денес.",
    "oc": "Bonjorn mon amic, uèi fa fòrça bon temps.",
    "sh": "Zdravo prijatelju, vrijeme je danas jako lijepo.",
}


def compute(engines: Engines) -> dict:
    recognizer = engines.recognizer(None)
    translator, synthesizer = engines.translator, engines.synthesizer
    languages = sorted({language for pair in translator.pairs for language in pair})
    routes = [[s, t] for s in languages for t in languages if s != t and translator.route(s, t)]
    pairs = []
    for source in languages:
        if not recognizer.supports(source) or source not in PROBES:
            continue
        for target in languages:
            route = translator.route(source, target) if target != source else None
            if not route or not synthesizer.supports(target):
                continue
            try:
                translated = translator.translate(PROBES[source], source, target).strip()
            except RuntimeError:
                translated = ""
            if not translated:
                continue  # an installed pair that translates nothing
            pairs.append({"source": source, "target": target, "route": route, "pivot": len(route) > 1})
    return {
        "asr": {"engine": recognizer.name, "languages": sorted({canonical(code) for code in recognizer.languages})},
        "mt": {"engine": translator.name, "direct": [list(pair) for pair in sorted(translator.pairs)],
               "routes": routes},
        "tts": {"engine": synthesizer.name,
                "languages": sorted(language for language in languages if synthesizer.supports(language))},
        "pairs": pairs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m lingo_worker.language_matrix", description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {MATRIX_FILE} instead of printing")
    args = parser.parse_args()
    engines = build_engines("cpu", None)
    try:
        matrix = compute(engines)
    finally:
        for engine in (engines.translator, engines.synthesizer):
            getattr(engine, "close", lambda: None)()
    text = json.dumps(matrix, indent=1, ensure_ascii=False) + "\n"
    if args.write:
        MATRIX_FILE.write_text(text)
        print(f"{len(matrix['pairs'])} pairs written to {MATRIX_FILE}", file=sys.stderr)
    else:
        print(text)


if __name__ == "__main__":
    main()
