"""Requests for the serving simulator: a Poisson arrival process with dataset-like lengths, Gaussian lengths for a
closed loop, or a trace file.

Length distributions. pim.md §1.5 (NeuPIMs §8.1) gives only the dataset means: ShareGPT 80 prompt / 296 output
tokens, Alpaca (text-davinci-003) 12 / 56. The shape is our assumption: each length is an independent lognormal
(shape `sigma` = 1.0, a heavy right tail as in chat traces), rounded to the nearest integer and clipped to
[1, max]. The lognormal's location is solved so that the mean *after* clipping equals the stated mean (closed form
for the clipped lognormal, then bisection), so the presets keep the paper's means. The caps follow the models'
2,048-token context: ShareGPT prompts and outputs at most 1,024 tokens each; Alpaca, whose texts are short, at most
256 prompt and 512 output tokens.

Lamina's traces (pim.md §3.5, Lamina v2 §6) give only their means too: Azure-Conv 1154.7 prompt / 211.1 generated
tokens, Azure-Code 2047.8 / 27.9, Kimi-Conv 12035.1 / 342.6, Kimi-TA 8560.0 / 182.1. The same lognormal family is
assumed, and so are the caps: each is 8 x the mean rounded to the nearest power of two (in log2), 2.2 to 2.9 sigma
above the location, so 0.2 to 1.2 % of draws are clipped (Kimi-Conv's outputs the most: their cap is 6 x their
mean; ShareGPT's 1,024-token cap clips about 5 % of its outputs): prompts at most 8,192 (Azure-Conv), 16,384
(Azure-Code), 131,072 (Kimi-Conv, 128 Ki) and 65,536 (Kimi-TA) tokens; outputs at most 2,048, 256, 2,048 and
2,048. The caps bound the traces, not a model's context (Kimi-Conv's mean prompt alone is beyond LLaMA's 2,048).

Gaussian lengths (`gaussian_requests`, Duplex's synthetic workload, pim.md §2.4: "Gaussian-sampled lengths" around
(L_in, L_out)): each length is normal with the given mean and a standard deviation of `std_fraction` x the mean
(the paper gives none, so the caller states it), rounded and clipped to [1, 2 x mean - 1], symmetric about the
mean, so the mean stays the given one (a draw of mean + d, rounded, is as likely as one of mean - d). Their arrival
times are 0: a closed-loop run (`archsim.systems.serving.simulate_serving` with `closed_loop`) releases them as
earlier ones finish.

Requests are capped at `MAX_REQUESTS` per run (ARCHSIM_MAX_REQUESTS raises it): the simulator takes about 5 ms of
CPU per request, so the cap is a run of minutes, not a hang. So is a request's `output_tokens`, at
`MAX_OUTPUT_TOKENS` (ARCHSIM_MAX_OUTPUT_TOKENS): each is a decode iteration of its own, about 0.1 ms of CPU, and a
request wanting 2^24 tokens would run for most of an hour whatever the batch.

Trace files (`read_trace`), told apart by their content: archsim's CSV (`arrival_s,prompt_tokens,output_tokens`,
arrivals in seconds as written); the CSV of Azure's LLM inference traces (Azure/AzurePublicDataset, 2023 and 2024:
Lamina's Azure-Conv and Azure-Code), `TIMESTAMP,ContextTokens,GeneratedTokens` with `TIMESTAMP` a date and time such
as `2023-11-16 18:15:46.6805900`; and Mooncake's JSON Lines (kvcache-ai/Mooncake: Lamina's Kimi-Conv and Kimi-TA),
a file whose first non-blank line starts with `{`, one object a line with `timestamp` (milliseconds),
`input_length` and `output_length` (other keys, `hash_ids`, ignored; a key written twice in one object is refused,
as a CSV's column named twice is). The last two formats' arrivals are the seconds since the trace's earliest
request, computed exactly (from whole nanoseconds, Azure's; from the JSON number as written, Mooncake's `7056.021`,
not its float) and rounded once, so that no digit is lost: the same arrivals written in the three formats are the
same requests.
"""

from __future__ import annotations

import datetime
import decimal
import itertools
import json
import math
import random
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

from archsim.errors import LimitError, SpecError, check_choice
from archsim.limits import env_limit
from archsim.spec_files import csv_rows, read_text_file
from archsim.workload import max_size

TRACE_COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens")
# The same three fields in the public traces' files (module docstring): Azure's CSV header, Mooncake's JSON keys
AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
MOONCAKE_KEYS = ("timestamp", "input_length", "output_length")
# What a trace file may be, as messages and `simulate --help` name it
TRACE_FORMATS = (f"a CSV file with the header {','.join(TRACE_COLUMNS)} or Azure's {','.join(AZURE_COLUMNS)}, or "
                 f"JSON Lines of objects with {', '.join(MOONCAKE_KEYS)} (Mooncake's)")
# A Mooncake timestamp's decimal places read exactly (1e-40 ms, far below a float's resolution of any arrival
# above 1e-27 s): a later digit is rounded off first (half to even), in a context that holds 2^53 ms to that place
EXACT_MS_PLACES = 40
_MS_CONTEXT = decimal.Context(prec=16 + EXACT_MS_PLACES + 4)
# An Azure TIMESTAMP: a date and a time of day, with up to 9 fractional digits (Azure writes 7), no time zone
AZURE_TIME_TEXT = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[ T]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?")
AZURE_TIME_EXAMPLE = "2023-11-16 18:15:46.6805900"
T = TypeVar("T")  # a trace's row, as `_within_request_limit` takes them
MAX_REQUESTS = 100_000
MAX_REQUESTS_ENV = "ARCHSIM_MAX_REQUESTS"
MAX_OUTPUT_TOKENS = 2**20  # a request's decode iterations: about two minutes of CPU at ~8,000 iterations a second
MAX_OUTPUT_TOKENS_ENV = "ARCHSIM_MAX_OUTPUT_TOKENS"
# Why output tokens have a limit of their own, as a refusal beyond it says
OUTPUT_LIMIT_WHY = (f"each output token is a decode iteration of the run, about 0.1 ms of CPU; raise the limit with "
                    f"the environment variable {MAX_OUTPUT_TOKENS_ENV}")
_STANDARD_NORMAL = statistics.NormalDist()
# A trace's token count: ASCII digits alone (int() also takes "1_0", "+10" and other scripts' digits, "١٠")
TOKENS_TEXT = re.compile(r"[0-9]+")
# A trace's arrival: a decimal number in ASCII digits, with an exponent or not (float() also takes "1_0", "١٠",
# "inf" and "nan")
SECONDS_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# The latest arrival a run times: float64 seconds there still resolve 2^30 x 2^-52 = 0.24 us (at 1e20 s an
# iteration's milliseconds vanished and TTFT and TBT read 0)
MAX_ARRIVAL_S = float(2**30)


@dataclass(frozen=True)
class Request:
    """One inference request: it arrives at `arrival_s`, brings `prompt_tokens` and wants `output_tokens`."""

    id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class LengthDistribution:
    """Prompt and output lengths, each lognormal with the given mean (after clipping to [1, max]) and shape."""

    name: str
    mean_prompt_tokens: float
    mean_output_tokens: float
    max_prompt_tokens: int
    max_output_tokens: int
    sigma: float = 1.0

    def __post_init__(self) -> None:
        for name in ("max_prompt_tokens", "max_output_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise SpecError("<python>", name, f"expected a whole number of tokens >= 2, got {value!r}")
        for name in ("mean_prompt_tokens", "mean_output_tokens", "sigma"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value)
                                                                                     and value > 0):
                raise SpecError("<python>", name, f"expected a positive finite number, got {value!r}")


LENGTH_PRESETS = {
    "sharegpt": LengthDistribution("sharegpt", 80.0, 296.0, max_prompt_tokens=1024, max_output_tokens=1024),
    "alpaca": LengthDistribution("alpaca", 12.0, 56.0, max_prompt_tokens=256, max_output_tokens=512),
    "azure-conv": LengthDistribution("azure-conv", 1154.7, 211.1, max_prompt_tokens=8192, max_output_tokens=2048),
    "azure-code": LengthDistribution("azure-code", 2047.8, 27.9, max_prompt_tokens=16384, max_output_tokens=256),
    "kimi-conv": LengthDistribution("kimi-conv", 12035.1, 342.6, max_prompt_tokens=131072, max_output_tokens=2048),
    "kimi-ta": LengthDistribution("kimi-ta", 8560.0, 182.1, max_prompt_tokens=65536, max_output_tokens=2048),
}


def length_distribution(name: str) -> LengthDistribution:
    """The preset called `name` (a key of `LENGTH_PRESETS`)."""
    check_choice("lengths", name, tuple(LENGTH_PRESETS))
    return LENGTH_PRESETS[name]


def _clipped_lognormal_mean(mu: float, sigma: float, low: float, high: float) -> float:
    """E[min(max(X, low), high)] for X = exp(mu + sigma Z), Z standard normal."""
    a, b = (math.log(low) - mu) / sigma, (math.log(high) - mu) / sigma
    inside = math.exp(mu + sigma**2 / 2) * (_STANDARD_NORMAL.cdf(b - sigma) - _STANDARD_NORMAL.cdf(a - sigma))
    return low * _STANDARD_NORMAL.cdf(a) + high * (1.0 - _STANDARD_NORMAL.cdf(b)) + inside


def _location_for_mean(mean: float, sigma: float, high: float) -> float:
    """The lognormal location mu whose clipped-to-[1, high] mean is `mean` (the clipped mean rises with mu)."""
    if not 1.0 < mean < high:
        raise SpecError("<python>", "lengths", f"a mean length must lie strictly between 1 and {high}, got {mean}")
    lo, hi = -10.0 * sigma, math.log(high) + 10.0 * sigma
    for _ in range(80):
        mid = (lo + hi) / 2
        if _clipped_lognormal_mean(mid, sigma, 1.0, high) < mean:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def sample_lengths(lengths: LengthDistribution, n: int, rng: random.Random) -> list[tuple[int, int]]:
    """`n` (prompt_tokens, output_tokens) pairs drawn from `lengths` with `rng`."""
    mu_prompt = _location_for_mean(lengths.mean_prompt_tokens, lengths.sigma, lengths.max_prompt_tokens)
    mu_output = _location_for_mean(lengths.mean_output_tokens, lengths.sigma, lengths.max_output_tokens)

    def draw(mu: float, high: int) -> int:
        return min(max(round(rng.lognormvariate(mu, lengths.sigma)), 1), high)

    return [(draw(mu_prompt, lengths.max_prompt_tokens), draw(mu_output, lengths.max_output_tokens))
            for _ in range(n)]


def poisson_requests(*, rate_per_s: float, n: int, lengths: LengthDistribution | str,
                     seed: int) -> tuple[Request, ...]:
    """`n` requests arriving as a Poisson process of `rate_per_s` (exponential gaps, the first one after t = 0),
    lengths from `lengths` (a preset name or a distribution). The same seed gives the same requests. Every argument
    is by keyword: a rate and a count are both numbers, and `poisson_requests(20, 100, ...)` would swap them
    silently."""
    if isinstance(rate_per_s, bool) or not isinstance(rate_per_s, int | float) or not (
            rate_per_s > 0 and math.isfinite(rate_per_s)):
        raise SpecError("<python>", "rate_per_s", f"expected a positive finite rate, got {rate_per_s!r}")
    check_request_count(n, "<python>", "n")
    _check_seed(seed)
    if not isinstance(lengths, str | LengthDistribution):
        raise SpecError("<python>", "lengths", f"expected a length preset's name ({', '.join(LENGTH_PRESETS)}) or a "
                                               f"LengthDistribution, got {type(lengths).__name__} {lengths!r}")
    dist = length_distribution(lengths) if isinstance(lengths, str) else lengths
    rng = random.Random(seed)
    arrivals_s, now_s = [], 0.0
    for _ in range(n):
        now_s += rng.expovariate(rate_per_s)
        arrivals_s.append(now_s)
    pairs = sample_lengths(dist, n, rng)
    return tuple(Request(i, t, p, o) for i, (t, (p, o)) in enumerate(zip(arrivals_s, pairs, strict=True)))


def _check_seed(seed: int) -> None:
    """Refuse a seed that is not a whole number >= 0: None would draw from the OS's randomness, and
    `random.Random` seeds -1 as 1 and True as 1, so two seeds would give the same requests."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpecError("<python>", "seed", f"expected a whole number >= 0 (the same seed, the same requests), got "
                                            f"{seed!r}")


def gaussian_requests(n: int, mean_prompt_tokens: int, mean_output_tokens: int, std_fraction: float,
                      seed: int) -> tuple[Request, ...]:
    """`n` requests, all arriving at 0, with Gaussian prompt and output lengths (module docstring). The same seed
    gives the same requests."""
    check_request_count(n, "<python>", "n")
    for name, value in (("mean_prompt_tokens", mean_prompt_tokens), ("mean_output_tokens", mean_output_tokens)):
        if isinstance(value, bool) or not (isinstance(value, int) and value >= 1):
            raise SpecError("<python>", name, f"expected an integer >= 1, got {value!r}")
    if not (math.isfinite(std_fraction) and 0 <= std_fraction <= 1):
        raise SpecError("<python>", "std_fraction", f"expected a fraction of the mean in [0, 1], got {std_fraction}")
    _check_seed(seed)
    rng = random.Random(seed)

    def draw(mean: int) -> int:
        return min(max(round(rng.gauss(mean, std_fraction * mean)), 1), 2 * mean - 1)  # [1, 2 mean - 1]: about mean

    return tuple(Request(i, 0.0, draw(mean_prompt_tokens), draw(mean_output_tokens)) for i in range(n))


def _parse_seconds(text: str, source: str, where: str) -> float:
    """A number of seconds >= 0 written in the digits 0-9 (`SECONDS_TEXT`; spaces around it allowed)."""
    written = text.strip()
    value = float(written) if SECONDS_TEXT.fullmatch(written) else math.nan
    if not (math.isfinite(value) and value >= 0):
        raise SpecError(source, where, f"expected a finite number of seconds >= 0 in the digits 0-9 (e.g. 0.25 or "
                                       f"1e-3), got {written!r}")
    return value


def _parse_tokens(text: str, source: str, where: str, limit: int, expected: str) -> int:
    """A token count from 1 to `limit` (the size limit, `archsim.workload.max_size`), written in the digits 0-9
    (`TOKENS_TEXT`; spaces around it allowed); outside it refused with `expected`, the bound that applies in words
    (`_tokens_expected`, `_output_tokens_expected`)."""
    digits = text.strip()
    try:
        value = int(digits) if TOKENS_TEXT.fullmatch(digits) else 0
    except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
        value = 0
    if not 1 <= value <= limit:
        shown = digits if len(digits) <= 40 else f"a {len(digits)}-character number"
        refusal = LimitError if value > limit else SpecError
        raise refusal(source, where, f"{expected}, in the digits 0-9, got {shown!r}")
    return value


def _tokens_expected(limit: int) -> str:
    return (f"expected an integer >= 1 and at most {limit} (the limit on sizes; raise it with the environment "
            f"variable ARCHSIM_MAX_SIZE)")


def _output_tokens_expected(size_limit: int, most_output_tokens: int) -> str:
    """What a trace's output length must be, in words: 1 to the lower of the size limit and the output limit
    (`MAX_OUTPUT_TOKENS`), that one named. A length parsed within the size limit and beyond the output limit is
    refused by `_check_request`."""
    if most_output_tokens <= size_limit:
        return f"expected an integer >= 1 and at most {most_output_tokens} ({OUTPUT_LIMIT_WHY})"
    return _tokens_expected(size_limit)


def _shown(value: object) -> str:
    """A JSON value as a message shows it: its repr (a number with a fraction or an exponent as written), or its
    type and length where that is long."""
    text = str(value) if isinstance(value, decimal.Decimal) else repr(value)
    return text if len(text) <= 40 else f"a {type(value).__name__} of {len(text)} characters"


def _json_tokens(value: object, source: str, where: str, limit: int, expected: str) -> int:
    """A token count from 1 to `limit` (`_parse_tokens`'s, refused with `expected` as there) that is a JSON integer
    (not a string, a boolean or a number with a fraction or an exponent, such as 5.0)."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    if not whole or not 1 <= value <= limit:
        refusal = LimitError if whole and value > limit else SpecError
        raise refusal(source, where, f"{expected}, a JSON integer, got {_shown(value)}")
    return value


def _parse_azure_time(text: str, source: str, where: str) -> int:
    """An Azure TIMESTAMP (`AZURE_TIME_TEXT`; spaces around it allowed) as whole nanoseconds since 0001-01-01 (a
    proleptic Gregorian calendar, no time zone): differences of them are exact, where a float of seconds since the
    epoch keeps only about 0.2 us."""
    written = text.strip()
    match = AZURE_TIME_TEXT.fullmatch(written)
    expected = (f"expected a date and time YYYY-MM-DD HH:MM:SS[.fraction of up to 9 digits] without a time zone "
                f"(e.g. {AZURE_TIME_EXAMPLE}), got {written if len(written) <= 40 else written[:40] + '...'!r}")
    if not match or len(match[7] or "") > 9:
        raise SpecError(source, where, expected)
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    try:
        day_number = datetime.date(year, month, day).toordinal()
        datetime.time(hour, minute, second)
    except ValueError as exc:
        raise SpecError(source, where, f"{expected} ({exc})") from None
    seconds = ((day_number * 24 + hour) * 60 + minute) * 60 + second
    return seconds * 10**9 + int((match[7] or "").ljust(9, "0"))


def _json_milliseconds(value: object, source: str, where: str) -> int | Fraction:
    """A Mooncake timestamp: a JSON number of milliseconds from 0 to 2^53 (a whole number in the published traces),
    exact: an integer, or the fraction a number with a fraction or an exponent writes (`_read_json_lines` reads it
    as a Decimal, not a float), to `EXACT_MS_PLACES` decimal places (`1e-99999999` would be a fraction of a
    hundred-million-digit denominator)."""
    if isinstance(value, bool) or not isinstance(value, int | decimal.Decimal) or not 0 <= value <= 2**53:
        raise SpecError(source, where, f"expected a number of milliseconds from 0 to 2^53 (a JSON number), got "
                                       f"{_shown(value)}")
    if not isinstance(value, decimal.Decimal):
        return value
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -EXACT_MS_PLACES:
        value = value.quantize(decimal.Decimal(1).scaleb(-EXACT_MS_PLACES), context=_MS_CONTEXT)
    return Fraction(value)


def check_request_count(n: int, source: str, where: str = "", at_least: bool = False) -> None:
    """Refuse a count that is not a whole number >= 0, or more than `MAX_REQUESTS` requests (ARCHSIM_MAX_REQUESTS),
    before any is made or simulated. `at_least`: `n` is what was counted before counting stopped (a trace read up
    to its first request past the limit, `_within_request_limit`), and the message says so."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise SpecError(source, where, f"expected a request count, a whole number >= 0, got {n!r}")
    limit = env_limit(MAX_REQUESTS_ENV, MAX_REQUESTS)
    if n > limit:
        counted = f"at least {n}" if at_least else str(n)
        raise LimitError(source, where, f"{counted} requests, beyond the limit of {limit} per run (about 5 ms of CPU "
                                        f"each; raise it with the environment variable {MAX_REQUESTS_ENV})")


def _within_request_limit(rows: Iterable[T], source: str) -> list[T]:
    """The rows a trace's requests are read from (one request a row), taken as they stream and refused
    (`check_request_count`, "at least limit + 1") at the first one past ARCHSIM_MAX_REQUESTS: a trace of millions
    of rows is refused after limit + 1 of them are read, before any is parsed, not after all are."""
    limit = env_limit(MAX_REQUESTS_ENV, MAX_REQUESTS)
    taken = list(itertools.islice(rows, limit + 1))
    check_request_count(len(taken), source, at_least=len(taken) > limit)
    return taken


def _is_blank_row(cells: Sequence[str]) -> bool:
    """Whether a CSV trace's row is a blank line (nothing but spaces: at most one cell, blank), which is no request
    and is skipped; a row of empty cells (`,,`) is a row, refused as one."""
    return len(cells) <= 1 and not "".join(cells).strip()


def read_trace(path: str | Path) -> tuple[Request, ...]:
    """Requests from a trace file in one of three formats (module docstring), told apart by content
    (`is_json_lines`): JSON Lines (`_read_json_lines`), else a CSV file with the header
    `arrival_s,prompt_tokens,output_tokens` or Azure's `TIMESTAMP,ContextTokens,GeneratedTokens` (in any order, no
    other columns), one request a row. Request ids are the row order (0-based). Rows need not be sorted by arrival;
    blank lines (nothing but spaces) are skipped, a row of empty cells is not. Each row is checked as
    `check_requests` checks a request. Errors name the file, the line the row starts on and the column (or key, as
    the file names it), and what was expected (the file itself: `read_text_file`, a regular file within
    ARCHSIM_MAX_CSV_BYTES, UTF-8; its CSV: `csv_rows`, read up to the first row past the request limit,
    `_within_request_limit`)."""
    source = str(path)
    text = read_text_file(path, "trace files", f"a request trace ({TRACE_FORMATS})")
    most_output_tokens = env_limit(MAX_OUTPUT_TOKENS_ENV, MAX_OUTPUT_TOKENS)
    if is_json_lines(text):
        return _read_json_lines(text, source, most_output_tokens)
    rows = csv_rows(text, source, f"a request trace: {TRACE_FORMATS}")
    header = [name.strip() for name in next(rows)[1]]
    azure = sorted(header) == sorted(AZURE_COLUMNS)
    if sorted(header) != sorted(TRACE_COLUMNS) and not azure:
        raise SpecError(source, "line 1", f"expected the header {','.join(TRACE_COLUMNS)} (or Azure's "
                                          f"{','.join(AZURE_COLUMNS)}; a JSON Lines trace starts with '{{'), got "
                                          f"{','.join(header)}")
    names = AZURE_COLUMNS if azure else TRACE_COLUMNS
    column = {field: header.index(name) for field, name in zip(TRACE_COLUMNS, names, strict=True)}
    limit = max_size()
    prompt_expected, output_expected = _tokens_expected(limit), _output_tokens_expected(limit, most_output_tokens)
    requests: list[Request] = []
    stamped: list[tuple[int, int, int, int]] = []  # Azure's (line, nanoseconds, prompt tokens, output tokens)
    for line, row in _within_request_limit(((line, row) for line, row in rows if not _is_blank_row(row)), source):
        if len(row) != len(header):
            raise SpecError(source, f"line {line}", f"expected {len(header)} fields, got {len(row)}")
        at = {field: (row[column[field]], source, f"line {line}: {name}")
              for field, name in zip(TRACE_COLUMNS, names, strict=True)}
        if azure:
            stamped.append((line, _parse_azure_time(*at["arrival_s"]),
                            _parse_tokens(*at["prompt_tokens"], limit, prompt_expected),
                            _parse_tokens(*at["output_tokens"], limit, output_expected)))
            continue
        request = Request(len(requests), _parse_seconds(*at["arrival_s"]),
                          _parse_tokens(*at["prompt_tokens"], limit, prompt_expected),
                          _parse_tokens(*at["output_tokens"], limit, output_expected))
        _check_request(request, source, f"line {line}", most_output_tokens)
        requests.append(request)
    if azure:
        return _from_the_earliest(stamped, 10**9, AZURE_COLUMNS, source, most_output_tokens)
    if not requests:
        raise SpecError(source, "", "the trace holds no requests")
    return tuple(requests)


def is_json_lines(text: str) -> bool:
    """Whether a trace's text (or its start) is JSON Lines, not a CSV: its first character that is not blank is
    `{` (a CSV trace's starts its header). The one test of a trace's format, `read_trace`'s and `archsim
    check`'s."""
    return text.lstrip().startswith("{")


def _read_json_lines(text: str, source: str, most_output_tokens: int) -> tuple[Request, ...]:
    """Requests from the text of a Mooncake JSON Lines trace read from `source` (module docstring): one JSON object
    a non-blank line, its `MOONCAKE_KEYS` read (each missing one or bad value a SpecError naming the line and the
    key), others ignored; output lengths at most `most_output_tokens`."""
    lines = _within_request_limit(((number, written) for number, written in enumerate(text.split("\n"), 1)
                                   if written.strip()), source)
    limit = max_size()
    prompt_expected = _tokens_expected(limit)
    output_expected = _output_tokens_expected(limit, most_output_tokens)
    expected = (f"expected a JSON object with the keys {', '.join(MOONCAKE_KEYS)} (others, such as hash_ids, are "
                f"ignored)")
    stamped: list[tuple[int, int | Fraction, int, int]] = []
    for line, written in lines:
        try:
            entry = json.loads(written, parse_constant=_no_constant, parse_float=decimal.Decimal,
                               object_pairs_hook=_once_each)
        except _KeyTwice as exc:
            raise SpecError(source, f"line {line}: {exc.key}", "written twice in one object (JSON keeps the last); "
                                                               "a key is written once per object") from None
        except (ValueError, RecursionError) as exc:
            reason = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise SpecError(source, f"line {line}", f"{expected}; not JSON ({reason})") from None
        if not isinstance(entry, dict):
            raise SpecError(source, f"line {line}", f"{expected}, got a JSON {type(entry).__name__}")
        for key in MOONCAKE_KEYS:
            if key not in entry:
                raise SpecError(source, f"line {line}: {key}", f"missing; {expected}")
        timestamp, prompt, output = (entry[key] for key in MOONCAKE_KEYS)
        stamped.append((line, _json_milliseconds(timestamp, source, f"line {line}: timestamp"),
                        _json_tokens(prompt, source, f"line {line}: input_length", limit, prompt_expected),
                        _json_tokens(output, source, f"line {line}: output_length", limit, output_expected)))
    return _from_the_earliest(stamped, 1000, MOONCAKE_KEYS, source, most_output_tokens)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is no JSON number")


class _KeyTwice(Exception):
    """A key written twice in one JSON object of a trace line (`_once_each`)."""

    def __init__(self, key: str) -> None:
        self.key = key


def _once_each(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object's (key, value) pairs as a dict, each key once: json.loads would keep the last of two silently
    (a CSV trace's header refuses a column named twice, a YAML spec a key written twice)."""
    entry: dict[str, object] = {}
    for key, value in pairs:
        if key in entry:
            raise _KeyTwice(key)
        entry[key] = value
    return entry


def _from_the_earliest(stamped: list[tuple[int, int | Fraction, int, int]], ticks_per_s: int,
                       names: tuple[str, ...], source: str, most_output_tokens: int) -> tuple[Request, ...]:
    """Requests from (line, time in ticks of 1 / `ticks_per_s` s, prompt tokens, output tokens) rows, in row order,
    each arriving at its seconds since the earliest row's time (a difference of ticks, whole ones or fractions,
    exact, then one rounding to the nearest float), each checked (`_check_request`) naming its line and the file's
    field (`names`, as `TRACE_COLUMNS`) and its output at most `most_output_tokens`."""
    if not stamped:
        raise SpecError(source, "", "the trace holds no requests")
    earliest = min(ticks for _, ticks, _, _ in stamped)
    requests = tuple(Request(i, float((ticks - earliest) / ticks_per_s), prompt, output)
                     for i, (_, ticks, prompt, output) in enumerate(stamped))
    for (line, *_), request in zip(stamped, requests, strict=True):
        _check_request(request, source, f"line {line}", most_output_tokens, names)
    return requests


def checked_poisson_requests(*, rate_per_s: float, n: int, lengths: LengthDistribution | str, seed: int,
                             source: str, rate_where: str = "") -> tuple[Request, ...]:
    """`poisson_requests`, checked as the simulator checks requests (`check_requests`): a rate so low that an
    arrival falls past what a float times to the microsecond is a SpecError at `rate_where` of `source`, the option
    or path that gave the rate, in its terms (the rate, then the request it puts too late)."""
    requests = poisson_requests(rate_per_s=rate_per_s, n=n, lengths=lengths, seed=seed)
    try:
        check_requests(requests, source)
    except SpecError as error:
        raise SpecError(source, rate_where, f"{rate_per_s:g} requests/s puts {error.where}: {error.message}") from None
    return requests


def check_requests(requests: Sequence[Request], source: str = "<python>") -> None:
    """Reject requests with duplicate ids, or any `_check_request` rejects, naming the request by its id."""
    seen: set[int] = set()
    most = env_limit(MAX_OUTPUT_TOKENS_ENV, MAX_OUTPUT_TOKENS)
    for r in requests:
        where = f"request {r.id}"
        if isinstance(r.id, bool) or not isinstance(r.id, int):
            raise SpecError(source, f"{where}: id", f"expected an integer, got {r.id!r}")
        if r.id in seen:
            raise SpecError(source, where, "duplicate request id")
        seen.add(r.id)
        _check_request(r, source, where, most)


def _check_request(r: Request, source: str, where: str, most_output_tokens: int,
                   names: tuple[str, ...] = TRACE_COLUMNS) -> None:
    """Reject a request (named `where`: by its id, or its trace's line) arriving at a time that is negative, not
    finite or past `MAX_ARRIVAL_S`, with a length below one token, or wanting more output tokens than
    `most_output_tokens` (`MAX_OUTPUT_TOKENS`, ARCHSIM_MAX_OUTPUT_TOKENS). The fields are named `names` (a trace
    file's names for `TRACE_COLUMNS`)."""
    arrival, prompt, output = names
    if not (math.isfinite(r.arrival_s) and 0 <= r.arrival_s <= MAX_ARRIVAL_S):
        raise SpecError(source, f"{where}: {arrival}", f"expected a number of seconds from 0 to {MAX_ARRIVAL_S:g} "
                                                       f"(beyond it a float cannot time a microsecond), got "
                                                       f"{r.arrival_s:g}")
    for field, name in (("prompt_tokens", prompt), ("output_tokens", output)):
        value = getattr(r, field)
        if not (isinstance(value, int) and value >= 1):
            raise SpecError(source, f"{where}: {name}", f"expected an integer >= 1, got {value!r}")
    if r.output_tokens > most_output_tokens:
        raise LimitError(source, f"{where}: {output}",
                         f"expected at most {most_output_tokens} ({OUTPUT_LIMIT_WHY}), got {r.output_tokens}")
