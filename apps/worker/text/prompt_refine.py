"""Refinement of text-to-image (FLUX) prompts: by deterministic rules, or by an OpenAI-style LLM.

Both return a `Refinement`. The rules never fail on a valid input; the LLM path raises
`LlmUnavailable` after its retries, so a caller can fall back to `refine_rules`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from apps.worker.errors import InvalidInput, JobFailed

DEFAULT_MAX_LENGTH = 400
LLM_ATTEMPTS = 3
LLM_TEMPERATURE = 0.2
LLM_MAX_TOKENS = 512


@dataclass(frozen=True)
class Modifier:
    """A phrase to add, skipped when the prompt already holds it or one of `satisfied_by`."""

    phrase: str
    satisfied_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Style:
    """What a style adds to the prompt, and what it adds to the negative prompt."""

    modifiers: tuple[Modifier, ...]
    negative: tuple[str, ...]


def _mods(*phrases: str) -> tuple[Modifier, ...]:
    return tuple(Modifier(phrase) for phrase in phrases)


# Added after the style's modifiers: a style that brings its own lighting skips "professional
# lighting".
QUALITY_MODIFIERS: tuple[Modifier, ...] = (
    Modifier("highly detailed", ("detailed", "intricate")),
    Modifier("sharp focus", ("sharp", "in focus")),
    Modifier("professional lighting", ("lighting", "lit")),
)

NEGATIVE_BASE: tuple[str, ...] = (
    "blurry",
    "low quality",
    "lowres",
    "jpeg artifacts",
    "watermark",
    "signature",
    "text",
    "deformed",
    "bad anatomy",
    "extra limbs",
    "cropped",
    "out of frame",
)

# The styles a request may name (`style=`); names are matched case-insensitively, "-" or " " as "_".
STYLES: dict[str, Style] = {
    "photo": Style(
        _mods("photorealistic", "35mm photograph", "natural colors"),
        ("painting", "illustration", "cartoon", "cgi"),
    ),
    "cinematic": Style(
        _mods("cinematic still", "dramatic lighting", "shallow depth of field", "film grain"),
        ("flat lighting", "amateur snapshot", "overexposed"),
    ),
    "anime": Style(
        _mods("anime style", "cel shading", "vibrant colors", "clean line art"),
        ("photorealistic", "3d render", "realistic skin texture"),
    ),
    "watercolor": Style(
        _mods("watercolor painting", "soft washes", "paper texture"),
        ("photorealistic", "3d render", "hard edges"),
    ),
    "oil_painting": Style(
        _mods("oil painting", "visible brush strokes", "rich textures", "canvas"),
        ("photograph", "3d render", "digital art"),
    ),
    "digital_art": Style(
        _mods("digital art", "concept art", "vivid colors"),
        ("photograph", "film grain"),
    ),
    "pixel_art": Style(
        _mods("pixel art", "16-bit", "limited palette", "crisp pixels"),
        ("blurry", "anti-aliasing", "photorealistic", "smooth gradients"),
    ),
    "3d_render": Style(
        _mods("3d render", "octane render", "global illumination", "physically based materials"),
        ("2d", "flat illustration", "sketch"),
    ),
}


@dataclass(frozen=True)
class Refinement:
    """A refined prompt; `added` lists the phrases that are not the user's own."""

    prompt: str
    negative_prompt: str
    method: Literal["rules", "llm"]
    added: list[str] = field(default_factory=list)


class LlmUnavailable(JobFailed):
    """The LLM endpoint failed (after retries) or gave no usable reply (`llm_unavailable`).

    The message names no host or URL: the worker passes it on to the client.
    """

    def __init__(self, message: str) -> None:
        super().__init__("llm_unavailable", message)


def refine_rules(
    prompt: str, *, style: str | None = None, max_length: int = DEFAULT_MAX_LENGTH
) -> Refinement:
    """Refine `prompt` by fixed rules: the same input always gives the same output.

    The user's phrases come first (whitespace and punctuation normalised, duplicates dropped), then
    the style's modifiers, then quality modifiers not already present. Beyond `max_length`
    characters whole added phrases go from the end first; the user's own text is cut only if it
    alone is too long, and then at a word boundary.
    """
    chosen = _style(style)
    _check_max_length(max_length)
    user = _fit_words(", ".join(_phrases(prompt)), max_length)
    additions = _additions(user, chosen)
    while additions and len(_join(user, additions)) > max_length:
        additions.pop()
    return Refinement(
        prompt=_join(user, additions),
        negative_prompt=_negative(user, chosen),
        method="rules",
        added=additions,
    )


def refine_with_llm(
    prompt: str,
    *,
    url: str,
    model: str,
    api_key: str | None,
    style: str | None,
    max_length: int,
    timeout_s: float = 30,
    client: httpx.Client | None = None,
) -> Refinement:
    """Have an OpenAI-compatible LLM at `url` (a base such as `http://host:8000/v1`) rewrite it.

    Connection errors, timeouts, 429 and 5xx are retried (3 attempts in all, short backoff); then,
    or on any other failure or an unusable reply, it raises `LlmUnavailable`. `client` lets a caller
    reuse connections; without it one is made for the call.
    """
    chosen = _style(style)
    _check_max_length(max_length)
    user = ", ".join(_phrases(prompt))
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": _system_message(style, chosen, max_length)},
            {"role": "user", "content": user},
        ],
        "temperature": LLM_TEMPERATURE,
        "max_tokens": LLM_MAX_TOKENS,
        "response_format": {"type": "json_object"},
    }
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    endpoint = url.rstrip("/") + "/chat/completions"
    own_client = client is None
    http = httpx.Client(timeout=timeout_s) if client is None else client
    try:
        reply = _post_with_retries(http, endpoint, body, headers, timeout_s)
    finally:
        if own_client:
            http.close()
    refined, negative = _parse_reply(_message_content(reply))
    try:
        refined_prompt = _fit_words(", ".join(_phrases(refined)), max_length)
    except InvalidInput as error:
        raise LlmUnavailable("the LLM replied with an empty prompt") from error
    own = {phrase.lower() for phrase in _phrases(user)}
    return Refinement(
        prompt=refined_prompt,
        negative_prompt=negative or _negative(user, chosen),
        method="llm",
        added=[p for p in _phrases(refined_prompt) if p.lower() not in own],
    )


def _style(style: str | None) -> Style | None:
    if style is None:
        return None
    key = re.sub(r"[\s-]+", "_", style.strip().lower())
    if key not in STYLES:
        valid = ", ".join(sorted(STYLES))
        raise InvalidInput(f"unknown style {style!r}; valid styles: {valid}", field="style")
    return STYLES[key]


def _check_max_length(max_length: int) -> None:
    if max_length < 1:
        raise InvalidInput("max_length must be at least 1", field="max_length")


_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
# A comma between two digits ("1,000") belongs to a number, not a list of phrases.
_PHRASE_SEPARATOR = re.compile(r"(?<!\d),|,(?!\d)|\n")
_EDGE_PUNCTUATION = " \t.,;:"


def _phrases(text: str) -> list[str]:
    """The comma-separated phrases of `text`, tidied, first occurrence of each (any case) kept."""
    text = text.translate(_QUOTES)
    seen: set[str] = set()
    phrases = []
    for raw in _PHRASE_SEPARATOR.split(text):
        phrase = re.sub(r"\s+", " ", raw)
        phrase = re.sub(r"\s+([.!?;:])", r"\1", phrase).strip(_EDGE_PUNCTUATION)
        if phrase and phrase.lower() not in seen:
            seen.add(phrase.lower())
            phrases.append(phrase)
    if not phrases:
        raise InvalidInput("prompt is empty", field="prompt")
    return phrases


def _fit_words(text: str, max_length: int) -> str:
    """`text` cut to `max_length` at a word boundary (a single over-long word is cut hard)."""
    if len(text) <= max_length:
        return text
    head = text[: max_length + 1]
    cut = head.rfind(" ")
    kept = head[:cut] if cut > 0 else text[:max_length]
    return kept.rstrip(_EDGE_PUNCTUATION) or kept


def _mentions(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, re.IGNORECASE) is not None


def _additions(user: str, style: Style | None) -> list[str]:
    added: list[str] = []
    candidates = (style.modifiers if style else ()) + QUALITY_MODIFIERS
    for modifier in candidates:
        text = _join(user, added)
        if not any(_mentions(text, p) for p in (modifier.phrase, *modifier.satisfied_by)):
            added.append(modifier.phrase)
    return added


def _negative(user: str, style: Style | None) -> str:
    # A term the user asked for ("text on a sign", "blurry background") is not also forbidden.
    terms = dict.fromkeys(NEGATIVE_BASE + (style.negative if style else ()))
    return ", ".join(term for term in terms if not _mentions(user, term))


def _join(user: str, additions: list[str]) -> str:
    return ", ".join([user, *additions])


def _system_message(name: str | None, style: Style | None, max_length: int) -> str:
    lines = [
        "You rewrite prompts for a text-to-image model (FLUX).",
        "Keep every subject, object, colour and detail the user asked for; add concrete visual",
        "detail, composition, lighting and quality terms as short comma-separated phrases.",
        f"The prompt must be at most {max_length} characters.",
        'Reply with JSON only: {"prompt": "...", "negative_prompt": "..."}; the negative prompt',
        "is a comma-separated list of things to avoid.",
    ]
    if style is not None:
        hints = ", ".join(modifier.phrase for modifier in style.modifiers)
        lines.append(f"Render it in the style {name!r} ({hints}).")
    return "\n".join(lines)


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, httpx.TransportError):
        return True
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return status == 429 or status >= 500
    return False


def _post_with_retries(
    http: httpx.Client,
    endpoint: str,
    body: dict[str, Any],
    headers: dict[str, str],
    timeout_s: float,
) -> Any:
    def post() -> Any:
        response = http.post(endpoint, json=body, headers=headers, timeout=timeout_s)
        response.raise_for_status()
        return response.json()

    retrying = Retrying(
        stop=stop_after_attempt(LLM_ATTEMPTS),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        retry=retry_if_exception(_is_transient),
    )
    try:
        return retrying(post)
    except RetryError as error:
        last = error.last_attempt.exception()
        raise LlmUnavailable(
            f"the LLM failed {LLM_ATTEMPTS} times, last: {_describe(last)}"
        ) from last
    except (httpx.HTTPError, ValueError) as error:
        # Not worth retrying: a 4xx (bad key, unknown model) or a body that is not JSON.
        raise LlmUnavailable(f"the LLM failed: {_describe(error)}") from error


def _describe(error: BaseException | None) -> str:
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code}"
    return f"{type(error).__name__}: {error}"


def _message_content(reply: Any) -> str:
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as error:
        raise LlmUnavailable("the LLM reply is not a chat completion") from error
    if not isinstance(content, str) or not content.strip():
        raise LlmUnavailable("the LLM reply has no text")
    return content


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def _parse_reply(content: str) -> tuple[str, str]:
    """(prompt, negative prompt) from the LLM's text: JSON, JSON in a fence, or the text itself."""
    fenced = _FENCE.search(content)
    text = (fenced.group(1) if fenced else content).strip()
    embedded = _OBJECT.search(text)
    for candidate in (text, embedded.group(0) if embedded else ""):
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("prompt"), str):
            return data["prompt"], _negative_text(data.get("negative_prompt"))
    return text.strip().strip("\"'"), ""


def _negative_text(value: object) -> str:
    if isinstance(value, list):
        value = ", ".join(str(item) for item in value)
    if not isinstance(value, str) or not value.strip():
        return ""
    try:
        return ", ".join(_phrases(value))
    except InvalidInput:
        return ""
