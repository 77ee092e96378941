"""Native (exponential) histogram buckets: the schema a bucket factor gives, the bucket an
observation falls into, and the reduction of resolution past a bucket limit, as client_golang
computes them, so Prometheus sees the buckets a Go service would have sent for the same values.

A bucket of schema ``s`` with index ``i`` holds the values in ``(2^((i-1)/2^s), 2^(i/2^s)]``;
values at or below the zero threshold go to the zero bucket. Observations here are never negative
(the spec refuses them), so only positive buckets exist.
"""

from __future__ import annotations

import functools
import math
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "DEFAULT_FACTOR",
    "DEFAULT_MAX_BUCKETS",
    "DEFAULT_ZERO_THRESHOLD",
    "SCHEMA_MAX",
    "SCHEMA_MIN",
    "NativeBuckets",
    "NativeDef",
    "bounds",
    "bucket_key",
    "fast_bounds",
    "pick_schema",
    "rebuilt",
    "spans_and_deltas",
    "upper_bound",
]

SCHEMA_MIN: Final = -4
SCHEMA_MAX: Final = 8
# client_golang's defaults: a factor of 1.1 (schema 3), its zero threshold (2^-128), 160 buckets.
DEFAULT_FACTOR: Final = 1.1
DEFAULT_ZERO_THRESHOLD: Final = 2.938735877055719e-39
DEFAULT_MAX_BUCKETS: Final = 160

# The fractions (as ``math.frexp`` gives them, in [0.5, 1)) where the buckets of schema 8 start:
# 2^(i/256)/2. These are client_golang's constants (Apache-2.0), not recomputed: ``2**(i/256)``
# differs from them in the last bit for about 180 of the 256, and a value on such a boundary
# would fall into the neighbouring bucket of what a Go client (and Prometheus) computes. A lower
# schema's boundaries are every 2^(8-s)-th of these.
_SCHEMA8: Final = (
    0.5,
    0.5013556375251013,
    0.5027149505564014,
    0.5040779490592088,
    0.5054446430258502,
    0.5068150424757447,
    0.5081891574554764,
    0.509566998038869,
    0.5109485743270583,
    0.5123338964485679,
    0.5137229745593818,
    0.5151158188430205,
    0.5165124395106142,
    0.5179128468009786,
    0.5193170509806894,
    0.520725062344158,
    0.5221368912137069,
    0.5235525479396449,
    0.5249720429003435,
    0.526395386502313,
    0.5278225891802786,
    0.5292536613972564,
    0.5306886136446309,
    0.5321274564422321,
    0.5335702003384117,
    0.5350168559101208,
    0.5364674337629877,
    0.5379219445313954,
    0.5393803988785598,
    0.5408428074966075,
    0.5423091811066545,
    0.5437795304588847,
    0.5452538663326288,
    0.5467321995364429,
    0.5482145409081883,
    0.549700901315111,
    0.5511912916539204,
    0.5526857228508706,
    0.5541842058618393,
    0.5556867516724088,
    0.5571933712979462,
    0.5587040757836845,
    0.5602188762048033,
    0.5617377836665098,
    0.5632608093041209,
    0.564787964283144,
    0.5663192597993595,
    0.5678547070789026,
    0.5693943173783458,
    0.5709381019847808,
    0.572486072215902,
    0.5740382394200894,
    0.5755946149764913,
    0.5771552102951081,
    0.5787200368168754,
    0.5802891060137493,
    0.5818624293887887,
    0.5834400184762408,
    0.585021884841625,
    0.5866080400818185,
    0.5881984958251406,
    0.5897932637314379,
    0.5913923554921704,
    0.5929957828304968,
    0.5946035575013605,
    0.5962156912915756,
    0.5978321960199137,
    0.5994530835371903,
    0.6010783657263515,
    0.6027080545025619,
    0.6043421618132907,
    0.6059806996384005,
    0.6076236799902344,
    0.6092711149137041,
    0.6109230164863786,
    0.6125793968185725,
    0.6142402680534349,
    0.6159056423670379,
    0.6175755319684665,
    0.6192499490999082,
    0.620928906036742,
    0.622612415087629,
    0.6243004885946023,
    0.6259931389331581,
    0.6276903785123455,
    0.6293922197748583,
    0.6310986751971253,
    0.6328097572894031,
    0.6345254785958666,
    0.6362458516947014,
    0.637970889198196,
    0.6397006037528346,
    0.6414350080393891,
    0.6431741147730128,
    0.6449179367033329,
    0.6466664866145447,
    0.6484197773255048,
    0.6501778216898253,
    0.6519406325959679,
    0.6537082229673385,
    0.6554806057623822,
    0.6572577939746774,
    0.659039800633032,
    0.6608266388015788,
    0.6626183215798706,
    0.6644148621029772,
    0.6662162735415805,
    0.6680225691020727,
    0.6698337620266515,
    0.6716498655934177,
    0.6734708931164728,
    0.6752968579460171,
    0.6771277734684463,
    0.6789636531064505,
    0.6808045103191123,
    0.6826503586020058,
    0.6845012114872953,
    0.6863570825438342,
    0.688217985377265,
    0.690083933630119,
    0.6919549409819159,
    0.6938310211492645,
    0.6957121878859629,
    0.6975984549830999,
    0.6994898362691555,
    0.7013863456101023,
    0.7032879969095076,
    0.7051948041086352,
    0.7071067811865475,
    0.7090239421602076,
    0.7109463010845827,
    0.7128738720527471,
    0.7148066691959849,
    0.7167447066838943,
    0.718687998724491,
    0.7206365595643126,
    0.7225904034885232,
    0.7245495448210174,
    0.7265139979245261,
    0.7284837772007218,
    0.7304588970903234,
    0.7324393720732029,
    0.7344252166684908,
    0.7364164454346837,
    0.7384130729697496,
    0.7404151139112358,
    0.7424225829363761,
    0.7444354947621984,
    0.7464538641456323,
    0.7484777058836176,
    0.7505070348132126,
    0.7525418658117031,
    0.7545822137967112,
    0.7566280937263048,
    0.7586795205991071,
    0.7607365094544071,
    0.762799075372269,
    0.7648672334736434,
    0.7669409989204777,
    0.7690203869158282,
    0.7711054127039704,
    0.7731960915705107,
    0.7752924388424999,
    0.7773944698885442,
    0.7795022001189185,
    0.7816156449856788,
    0.7837348199827764,
    0.7858597406461707,
    0.7879904225539431,
    0.7901268813264122,
    0.7922691326262467,
    0.7944171921585818,
    0.7965710756711334,
    0.7987307989543135,
    0.8008963778413465,
    0.8030678282083853,
    0.805245165974627,
    0.8074284071024302,
    0.8096175675974316,
    0.8118126635086642,
    0.8140137109286738,
    0.8162207259936375,
    0.8184337248834821,
    0.820652723822003,
    0.8228777390769823,
    0.8251087869603088,
    0.8273458838280969,
    0.8295890460808079,
    0.8318382901633681,
    0.8340936325652911,
    0.8363550898207981,
    0.8386226785089391,
    0.8408964152537144,
    0.8431763167241966,
    0.8454623996346523,
    0.8477546807446661,
    0.8500531768592616,
    0.8523579048290255,
    0.8546688815502312,
    0.8569861239649629,
    0.8593096490612387,
    0.8616394738731368,
    0.8639756154809185,
    0.8663180910111553,
    0.8686669176368529,
    0.871022112577578,
    0.8733836930995842,
    0.8757516765159389,
    0.8781260801866495,
    0.8805069215187917,
    0.8828942179666361,
    0.8852879870317771,
    0.8876882462632604,
    0.890095013257712,
    0.8925083056594671,
    0.8949281411607002,
    0.8973545375015533,
    0.8997875124702672,
    0.9022270839033115,
    0.9046732696855155,
    0.9071260877501991,
    0.909585556079304,
    0.9120516927035263,
    0.9145245157024483,
    0.9170040432046711,
    0.9194902933879467,
    0.9219832844793128,
    0.9244830347552253,
    0.9269895625416926,
    0.92950288621441,
    0.9320230241988943,
    0.9345499949706191,
    0.9370838170551498,
    0.93962450902828,
    0.9421720895161669,
    0.9447265771954693,
    0.9472879907934827,
    0.9498563490882775,
    0.9524316709088368,
    0.9550139751351947,
    0.9576032806985735,
    0.9601996065815236,
    0.9628029718180622,
    0.9654133954938133,
    0.9680308967461471,
    0.9706554947643201,
    0.9732872087896164,
    0.9759260581154889,
    0.9785720620876999,
    0.9812252401044634,
    0.9838856116165875,
    0.9865531961276168,
    0.9892280131939752,
    0.9919100824251095,
    0.9945994234836328,
    0.9972960560854698,
)


def bounds(schema: int) -> tuple[float, ...]:
    """The frexp fractions where the buckets of a positive ``schema`` start (see ``_SCHEMA8``)."""
    return _BOUNDS[schema]


_BOUNDS: Final = {s: _SCHEMA8[:: 1 << (SCHEMA_MAX - s)] for s in range(1, SCHEMA_MAX + 1)}


def pick_schema(factor: float) -> int:
    """The largest schema whose buckets grow by at most ``factor`` (> 1), within -4..8, as
    client_golang picks it: 8 for any factor below 2^(2^-8)."""
    floor = math.floor(math.log2(math.log2(factor)))
    if floor <= -SCHEMA_MAX:
        return SCHEMA_MAX
    if floor >= -SCHEMA_MIN:
        return SCHEMA_MIN
    return -floor


def bucket_key(value: float, schema: int) -> int:
    """The index of the bucket of ``schema`` holding the finite positive ``value``."""
    frac, exp = math.frexp(value)
    if schema > 0:
        b = _BOUNDS[schema]
        return bisect_left(b, frac) + (exp - 1) * len(b)
    key = exp - 1 if frac == 0.5 else exp
    return (key + (1 << -schema) - 1) >> -schema


# Shared by every unlinked or halved series: never written to (an increment of a missing key
# raises before it stores anything), so a lookup in it always misses.
_MISS: Final[dict[Any, int]] = {}
# The cells of buckets not (yet) tied to a series: a snapshot's copy, a state file's entry.
_UNLINKED: Final[list[float]] = []


@dataclass(frozen=True, slots=True)
class NativeDef:
    """A histogram's native bucket settings (the spec's ``native``)."""

    schema: int
    zero_threshold: float = DEFAULT_ZERO_THRESHOLD
    max_buckets: int = DEFAULT_MAX_BUCKETS  # 0: no limit


class NativeBuckets:
    """One series' native buckets: its current schema, the zero bucket and the populated buckets
    (index -> count), in the order they were first populated.

    A series in a store is also ``link``-ed to its classic cells (count and sum), so the
    generated hot path finds both with one lookup, and to ``fast``: its populated buckets while
    they are at the spec's schema, else an empty dict never written to, so the hot path's
    increment misses and ``observe`` (which knows the current schema) places the value."""

    __slots__ = ("cells", "fast", "positive", "schema", "zero")

    def __init__(self, schema: int, zero: int = 0, positive: dict[int, int] | None = None) -> None:
        self.schema = schema
        self.zero = zero
        self.positive: dict[int, int] = {} if positive is None else positive
        self.cells: list[float] = _UNLINKED
        self.fast: dict[Any, int] = _MISS

    def link(self, cells: list[float], schema: int) -> None:
        """Tie these buckets to their series' classic ``cells``, under the spec's ``schema``."""
        self.cells = cells
        self.fast = self.positive if self.schema == schema else _MISS

    def observe(self, value: float, native: NativeDef) -> None:
        """Count ``value`` (finite, not negative) as client_golang's ``Observe`` does."""
        if value > native.zero_threshold:
            key = bucket_key(value, self.schema)
            positive = self.positive
            if key in positive:
                positive[key] += 1
            else:
                self.create(key, native.max_buckets)
        else:
            self.zero += 1

    def add(self, value: float, n: int, native: NativeDef) -> None:
        """Count ``value`` ``n`` times at once (the approximations of ``rebuilt``)."""
        if value > native.zero_threshold:
            key = bucket_key(value, self.schema)
            if key in self.positive:
                self.positive[key] += n
            else:
                self.create(key, native.max_buckets, n)
        else:
            self.zero += n

    def create(self, key: int, max_buckets: int, n: int = 1) -> None:
        """A first observation (or ``n``) in bucket ``key``; past ``max_buckets`` buckets, the
        resolution halves once (client_golang's ``doubleBucketWidth``): each pair of buckets
        becomes one, so no observation is lost. At schema -4 nothing is left to halve and the
        buckets stay."""
        positive = self.positive
        positive[key] = n
        if max_buckets and len(positive) > max_buckets and self.schema > SCHEMA_MIN:
            self.schema -= 1
            self.fast = _MISS
            merged: dict[int, int] = {}
            for k, n in positive.items():
                # Bucket k of the finer schema lies in bucket ceil(k / 2) of the coarser one.
                half = (k + 1) >> 1
                merged[half] = merged.get(half, 0) + n
            self.positive = merged

    def copy(self) -> NativeBuckets:
        return NativeBuckets(self.schema, self.zero, dict(self.positive))

    @property
    def count(self) -> int:
        return self.zero + sum(self.positive.values())


def upper_bound(index: int, schema: int) -> float:
    """The upper bound of bucket ``index`` of ``schema``: 2^(index / 2^schema), from the same
    table as ``bucket_key`` (so ``bucket_key(upper_bound(i, s), s) == i``)."""
    if schema <= 0:
        return math.ldexp(1.0, index << -schema)
    octave, step = divmod(index, 1 << schema)
    if step == 0:
        return math.ldexp(1.0, octave)
    return math.ldexp(_BOUNDS[schema][step], octave + 1)


def rebuilt(
    native: NativeDef,
    old: NativeBuckets | None,
    old_native: NativeDef | None,
    classic: tuple[float, ...],
    cells: list[float],
) -> NativeBuckets | None:
    """A series' native buckets under new settings ``native``, from what was kept under others:
    its old native buckets (each count placed at its bucket's upper bound: exact for a coarser
    schema, as halving is), else its classic buckets (each count at the bucket's bound, those
    above the last bound just above it). Only the buckets are approximated; the count and sum
    stay exact, so the native histogram agrees with itself and rates over later ranges are
    exact. None when there is nothing to place."""
    out = NativeBuckets(native.schema)
    if old_native is not None:
        if old is None:
            return None
        if old.zero:
            out.add(old_native.zero_threshold, old.zero, native)
        for i, n in sorted(old.positive.items()):
            out.add(upper_bound(i, old.schema), n, native)
    elif classic:
        for bound, count in zip(classic, cells, strict=False):
            if count:
                out.add(max(bound, 0.0), int(count), native)
        above = int(cells[len(classic)])
        if above:
            out.add(math.nextafter(max(classic[-1], 0.0), math.inf), above, native)
    return out if out.zero or out.positive else None


# The values the hot path places with one search (``fast_bounds``): 2^-32 to 2^32, nanoseconds
# to a century in seconds; anything outside, and the zero bucket, takes ``observe``.
_FAST_OCTAVES: Final = 32


@functools.cache
def fast_bounds(
    native: NativeDef,
) -> tuple[tuple[float, ...], tuple[int | None, ...], float, float]:
    """For the generated hot path: the upper bounds of the spec schema's buckets over a wide
    range; for each place ``bisect_left(bounds, value)`` can return, the index of the bucket
    every value there is in, exactly as ``bucket_key`` places it (the bounds are the same table,
    scaled by powers of 2), or None where that is not one bucket: below the first bound, above
    the last, or at or below the zero threshold (None is never a key of the buckets, so the
    caller's increment misses and it calls ``observe``, with no test of the range); and the
    scale and shift that guess the place without a search: ``int(log2(value) * scale +
    shift)`` is the place of a value in the range but for rounding next to a bound, so the
    caller takes the guess only where ``bounds`` confirm it."""
    schema = native.schema
    first = bucket_key(max(native.zero_threshold, math.ldexp(1.0, -_FAST_OCTAVES)), schema)
    last = max(bucket_key(math.ldexp(1.0, _FAST_OCTAVES), schema), first)
    table = tuple(upper_bound(i, schema) for i in range(first - 1, last + 1))
    # Place p holds the values in (table[p - 1], table[p]]: bucket first - 1 + p, unless some of
    # them are in the zero bucket.
    keys: list[int | None] = [None]
    keys += [
        None if table[p - 1] < native.zero_threshold else first - 1 + p
        for p in range(1, len(table))
    ]
    keys.append(None)
    # Bucket i holds (2^((i-1)/2^s), 2^(i/2^s)]: the ceiling of log2(value) * 2^s, which is one
    # more than its truncation but on a bound; in the range the sum is above 1, so truncation
    # is the floor.
    return table, tuple(keys), math.ldexp(1.0, schema), float(2 - first)


def spans_and_deltas(positive: dict[int, int]) -> tuple[list[tuple[int, int]], list[int]]:
    """The buckets as the exposition writes them: spans (offset from the end of the previous
    span, or the first index; length) and each bucket's count as the change from the previous
    one. As client_golang does, a gap of one or two empty buckets is written as zero counts
    inside a span rather than as a new span."""
    spans: list[tuple[int, int]] = []
    deltas: list[int] = []
    previous = 0
    following = 0  # the index after the last bucket written
    offset = length = 0
    for n, i in enumerate(sorted(positive)):
        gap = i - following
        if n == 0 or gap > 2:
            if n:
                spans.append((offset, length))
            offset, length = gap, 0
        else:
            for _ in range(gap):
                deltas.append(-previous)
                previous = 0
                length += 1
        count = positive[i]
        deltas.append(count - previous)
        previous = count
        length += 1
        following = i + 1
    if positive:
        spans.append((offset, length))
    return spans, deltas
