"""A small parser for latent arithmetic: "Sneaker - Sandal + Ankle boot", "0.5*class:3 + [12, 40, 77]".

Grammar: term (('+' | '-') term)*, where a term is an optional number with an optional '*' and then an
operand: a class name (spaces and dashes allowed: "T-shirt/top", "Ankle boot"), a quoted name or path,
`class:N`, a list of seeds `[12, 40, 77]`, or a path to a .png image or a saved .npz latent
(`proj.npz#2` picks its third latent). Pure text in, operands out: no torch here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..config import MAX_SEED, ConfigError
from ..data.load import closest_name, did_you_mean

_NUMBER = re.compile(r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?")
_CLASS_INDEX = re.compile(r"class:(\d+)", re.IGNORECASE)
_SEEDS = re.compile(r"\[\s*(-?\d+(?:\s*,\s*-?\d+)*)\s*,?\s*\]")
MAX_FACTOR = 1e6  # far past any useful scale (tanh saturates long before), far below float32's overflow
_FILE = re.compile(r"\.(png|jpe?g|webp|bmp|gif|npz)(#\d+)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Operand:
    """One named point: kind is 'class' (value: index), 'seeds' (tuple of ints), 'seed' (an interpolation endpoint:
    (seed,), image r in row r) or 'file' (a path, '#k' allowed)."""

    kind: str
    value: int | tuple[int, ...] | str
    label: str  # how to show it under its picture


QUOTE_HINT = "; a file path with spaces, '+' or '-' in it goes in quotes: 'my shoe-1.png'"  # the command line's, not the studio's
FILE_CHOICES = ", .png images, .npz latents"  # the operands that name files (the command line's, not the studio's)
ENDPOINT_FILES = " (or an image or latent file)"  # the endpoints that name files: the studio leaves this out too


def describe_choices(class_names: list[str], what: str = "expression") -> str:
    """The one-line list of what may be named in an expression or an endpoint (`what`), for error messages."""
    others = ("seeds like 7, " if what == "endpoint" else "") + "seed lists like [12,40,77]" + FILE_CHOICES
    if not class_names:
        return f"this run has no class names; use {others}"
    return f"valid names: {', '.join(class_names)}; or class:0..{len(class_names) - 1}, {others}"


def _bad(token: str, text: str, class_names: list[str], why: str = "unknown name", what: str = "expression") -> ConfigError:
    # `what` is "expression" or "endpoint": a typo in interpolate's --from or --to called "in expression" sent the
    # reader looking for an expression they never wrote.
    # A path cut at a space, '+' or '-' looks like an unknown name: say how to keep it whole (not for 'T-shirt/top').
    quote = QUOTE_HINT if why == "unknown name" and ("/" in token or "\\" in token or _FILE.search(text)) else ""
    close = did_you_mean(token, class_names) if why == "unknown name" else ""
    return ConfigError(f"{why} '{token}' in {what} \"{text}\"{quote}{close}; {describe_choices(class_names, what)}")


def _empty(class_names: list[str], what: str) -> ConfigError:
    if what == "endpoint":
        return ConfigError(
            f"empty endpoint; give a seed such as 7, a seed list or a class{ENDPOINT_FILES}; {describe_choices(class_names, what)}"
        )
    return ConfigError(f'empty expression; write something like "Sneaker - Sandal + Ankle boot"; {describe_choices(class_names)}')


def _seed(token: str, text: str, what: str) -> int:
    """A seed written in an expression or endpoint (`what`), or a one-line error naming it."""
    if not 0 <= int(token) <= MAX_SEED:
        raise ConfigError(f'seed {token} in {what} "{text}" is out of range; seeds go from 0 to {MAX_SEED}')
    return int(token)


def _match_class(text: str, pos: int, class_names: list[str]) -> tuple[int, int] | None:
    """(class index, end) of the longest class name at pos that ends at a word boundary, or None."""
    low = text.lower()
    for i in sorted(range(len(class_names)), key=lambda i: -len(class_names[i])):
        name = class_names[i].lower()
        end = pos + len(name)
        if name and low.startswith(name, pos) and (end == len(text) or text[end].isspace() or text[end] in "+-*"):
            return i, end
    return None


def _operand(text: str, pos: int, class_names: list[str], what: str) -> tuple[Operand, int]:
    """Read one operand at pos (no leading whitespace) of an expression or endpoint (`what`): (operand, end)."""
    if text[pos] in "'\"":
        end = text.find(text[pos], pos + 1)
        if end < 0:
            raise _bad(text[pos:], text, class_names, "unclosed quote at", what)
        inner = text[pos + 1 : end]
        return _named(inner.strip(), text, class_names, what), end + 1
    if text[pos] == "[":
        m = _SEEDS.match(text, pos)
        if not m:
            close = text.find("]", pos)
            bad = text[pos : close + 1 if close >= 0 else len(text)]
            raise _bad(bad, text, class_names, "bad seed list (write it like [12,40,77])", what)
        return Operand(
            "seeds", tuple(_seed(s, text, what) for s in re.split(r"\s*,\s*", m.group(1))), f"seeds {m.group(1).replace(' ', '')}"
        ), m.end()
    hit = _match_class(text, pos, class_names)
    if hit:
        return Operand("class", hit[0], class_names[hit[0]]), hit[1]
    # A bare word: up to whitespace, '+' or '*'; a dash ends it too unless the word is a file path.
    end = pos
    while end < len(text) and not text[end].isspace() and text[end] not in "+*":
        end += 1
    whole = word = text[pos:end]
    if not _FILE.search(word) and "-" in word[1:]:
        word = word[: word.index("-", 1)]
    try:
        return _named(word, text, class_names, what), pos + len(word)
    except ConfigError:
        # 'T-shirt' cut at its dash is 'T', close to nothing: name the whole word when it is close to a class.
        if whole != word and closest_name(word, class_names) is None and closest_name(whole, class_names):
            raise _bad(whole, text, class_names, what=what) from None
        raise


def _named(word: str, text: str, class_names: list[str], what: str) -> Operand:
    """A single word or quoted text: class:N, a class name, or a file path."""
    m = _CLASS_INDEX.fullmatch(word)
    if m:
        k = int(m.group(1))
        if k >= len(class_names):
            raise _bad(word, text, class_names, "no such class", what)
        return Operand("class", k, class_names[k])
    lookup = {n.lower(): i for i, n in enumerate(class_names)}
    if word.lower() in lookup:
        k = lookup[word.lower()]
        return Operand("class", k, class_names[k])
    if _FILE.search(word):
        return Operand("file", word, word.replace("\\", "/").rsplit("/", 1)[-1])
    raise _bad(word, text, class_names, what=what)


def parse_expression(text: str, class_names: list[str]) -> list[tuple[float, Operand]]:
    """Parse an expression into (coefficient, operand) terms; a bad token is a one-line ConfigError naming it."""
    return _terms(text, class_names, "expression")


def _terms(text: str, class_names: list[str], what: str) -> list[tuple[float, Operand]]:
    """parse_expression's work; `what` ("expression" or "endpoint") is what its errors call the text."""
    terms: list[tuple[float, Operand]] = []
    pos, sign = 0, 1.0
    expect_operand = True
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        ch = text[pos]
        if not expect_operand:
            if ch not in "+-":
                raise _grammar(text[pos:].split()[0], text, class_names, "expected + or - before", what)
            sign, pos, expect_operand = (1.0 if ch == "+" else -1.0), pos + 1, True
            continue
        if ch in "+-" and _match_class(text, pos, class_names) is None:  # a leading or doubled sign
            sign, pos = sign * (1.0 if ch == "+" else -1.0), pos + 1
            continue
        coef = 1.0
        m = _NUMBER.match(text, pos)
        if m and _match_class(text, pos, class_names) is None and not _CLASS_INDEX.match(text, pos):
            coef, pos = float(m.group()), m.end()
            # 1e999 parses as inf, and 1e300 overflows the float32 latent: every image would be NaN, drawn black
            if not (math.isfinite(coef) and abs(coef) <= MAX_FACTOR):
                raise _grammar(m.group(), text, class_names, f"a factor must be a number within +/-{MAX_FACTOR:,.0f}, not", what)
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos < len(text) and text[pos] == "*":
                pos += 1
                while pos < len(text) and text[pos].isspace():
                    pos += 1
            if pos >= len(text) or text[pos] in "+-":
                raise _grammar(m.group(), text, class_names, "a number needs something to scale (write 0.5*Sneaker), not", what)
        operand, pos = _operand(text, pos, class_names, what)
        terms.append((sign * coef, operand))
        sign, expect_operand = 1.0, False
    if not text.strip():
        raise _empty(class_names, what)
    if expect_operand:  # signs alone ('-') are an expression missing its operand, not an empty one
        raise _grammar(text.strip()[-1], text, class_names, "expression ends with", what)
    return terms


def parse_endpoint(text: str, class_names: list[str]) -> Operand:
    """An interpolation endpoint: a bare integer is a seed; anything else is one operand (class, seed list, image or latent)."""
    text = text.strip()
    if not text:
        raise _empty(class_names, "endpoint")
    if re.fullmatch(r"-?\d+", text) and text not in [n for n in class_names]:
        return Operand("seed", (_seed(text, text, "endpoint"),), f"seed {text}")
    if _FILE.search(text) and text.lower() not in [n.lower() for n in class_names]:
        return _named(text, text, class_names, "endpoint")  # one endpoint is one operand: a path with spaces or '+' stays whole
    terms = _terms(text, class_names, "endpoint")
    if len(terms) != 1 or terms[0][0] != 1.0:
        raise _not_one(text)
    return terms[0][1]


def _not_one(text: str) -> ConfigError:
    return ConfigError(f"an endpoint is one seed, seed list or class{ENDPOINT_FILES}, not an expression: '{text}'")


def _grammar(token: str, text: str, class_names: list[str], why: str, what: str) -> ConfigError:
    # An endpoint is one operand: a sign, factor or second operand in it was meant as an expression, and the
    # expression's advice (write 0.5*Sneaker, put a + before it) would only lead to that refusal.
    return _not_one(text) if what == "endpoint" else _bad(token, text, class_names, why)
