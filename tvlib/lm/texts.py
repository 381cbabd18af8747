"""Licence-clean stand-ins for the paper's books: a forget text, an aligned text and a less aligned text.

The forget and aligned texts are told in the same invented world (a school of magic: characters,
places, objects and sentence templates); `share` is the fraction of every vocabulary and of the
sentence templates that the aligned text takes from the forget text's world, the rest coming from
a fresh world of the same genre. The less aligned text is a novel of manners with its own sentence
templates and style; `less_share` is the fraction of the forget world's names, places and words it
borrows (its sentences stay its own). Everything is drawn from a seeded numpy Generator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace

import numpy as np

__all__ = ["World", "fantasy_world", "manners_world", "mix_worlds", "borrow_words", "generate_text", "make_texts",
           "ngram_overlap"]

# ------------------------------------------------------------------------- fantasy (forget, aligned)

_FANTASY_ONSETS = ["al", "bri", "cor", "dru", "el", "fen", "gar", "hal", "is", "jor", "kel", "lor", "mar", "nev",
                   "or", "per", "quil", "ros", "sel", "tam", "ul", "vor", "wyn", "zan", "thal", "bel", "cae", "dor"]
_FANTASY_CODAS = ["a", "en", "ric", "wen", "ius", "o", "ia", "an", "el", "ys", "on", "ith", "ara", "us"]
_FANTASY_SURNAME_ENDS = ["wood", "stone", "bright", "vale", "thorn", "more", "ley", "croft", "well", "hart"]
_FANTASY_PLACE_ENDS = ["hollow", "mere", "spire", "keep", "ford", "moor", "gate", "fell", "wick", "holm"]
_FANTASY_PLACE_KINDS = ["Tower", "Hall", "Library", "Forest", "Lake", "Bridge", "Vault", "Garden", "Chapel", "Stair"]
_FANTASY_MATERIALS = ["silver", "iron", "glass", "oaken", "golden", "copper", "bone", "crystal", "amber", "ivory",
                      "jade", "ashen", "brass", "velvet", "obsidian", "pewter"]
_FANTASY_THINGS = ["key", "lantern", "compass", "wand", "mirror", "book", "ring", "cloak", "map", "bell", "quill",
                   "goblet", "locket", "staff", "hourglass", "crown"]
_FANTASY_CREATURES = ["owl", "toad", "griffin", "serpent", "raven", "hound", "stag", "wisp", "basilisk", "phoenix",
                      "salamander", "moth", "wyvern", "badger", "kestrel", "selkie"]
_FANTASY_VERBS = ["found", "lost", "carried", "concealed", "opened", "guarded", "seized", "mended", "studied",
                  "buried", "cursed", "polished", "traded", "cracked", "summoned", "enchanted", "sealed", "dropped",
                  "followed", "misplaced"]
_FANTASY_ADJS = ["old", "strange", "quiet", "broken", "hidden", "ancient", "bright", "cold", "narrow", "forbidden",
                 "dusty", "crooked", "silent", "enchanted", "dark", "winding", "secret", "frozen", "hollow", "gloomy"]
_FANTASY_TIMES = ["before midnight", "at dawn", "after supper", "during the storm", "on the first day of term",
                  "before the feast", "at the stroke of twelve", "while the castle slept", "after the last lesson",
                  "before the snow came", "on the night of the comet", "during the exams"]
_FANTASY_TEMPLATES = [
    "{c1} {verb} the {obj} beneath {place}.",
    "\"We must reach {place} {time},\" said {c1}.",
    "{c1} and {c2} crept along the {adj} corridor toward {place}.",
    "The {creature} watched {c1} from the top of {place}.",
    "Nobody at {place} knew that {c1} had {verb} the {obj}.",
    "{c1} whispered a spell, and the {obj} began to glow.",
    "\"Give me the {obj},\" hissed {c2}, but {c1} only shook {pos} head.",
    "{time_cap}, {c1} {verb} the {obj} and ran to {place}.",
    "A {adj} {creature} was waiting for {c1} at {place}.",
    "{c2} said that the {obj} had belonged to the founder of {place}.",
    "{c1} had never seen a {creature} so {adj} before.",
    "The {adj} door of {place} would open only for the {obj}.",
    "\"The {creature} knows,\" said {c2}, \"and so does {c3}.\"",
    "{c1} wrote the name of {c2} in the {adj} book.",
    "Every student at {place} feared the {adj} {creature}.",
    "{c1} dreamed that {c2} {verb} the {obj} {time}.",
    "The headmaster of {place} was {c3}, who kept a {creature} in the east turret.",
    "{c1} held the {obj} up to the light and saw a {adj} mark.",
    "\"Is the {obj} still in {place}?\" asked {c1}.",
    "Behind {place}, {c1} and {c2} found a {adj} staircase.",
    "{c3} warned {c1} never to go near {place} {time}.",
    "The {obj} was {adj}, and it hummed whenever {c2} came near.",
    "{c1} traded a {obj} for the secret of {place}.",
    "In the {adj} hall, {c2} {verb} a {obj} that nobody wanted.",
    "{c1} laughed, but {c2} was staring at the {creature}.",
    "\"Follow the {creature} to {place},\" wrote {c3}.",
    "Long ago, a {adj} {creature} {verb} the {obj} of {c3}.",
    "{c1} could hear the {creature} calling from {place}.",
    "The map showed a {adj} path from {place} to {place2}.",
    "{c2} and {c3} argued about the {obj} all the way to {place}.",
    "{c1} wondered why the {creature} had {verb} the {obj}.",
    "It was {c2} who first noticed the {adj} light above {place}.",
    "\"Not the {obj} again,\" groaned {c1}.",
    "The {creature} of {place} guarded a {adj} {obj}.",
    "{c1} was punished for wandering into {place} {time}.",
    "{c3} kept the {obj} locked in a {adj} chest.",
    "Three students had {verb} the {obj} before {c1} arrived.",
    "{c2} pointed at {place2} and said nothing at all.",
    "When {c1} touched the {obj}, {place} fell {adj}.",
    "{c1} swore on the {obj} to protect {place}.",
]

# ------------------------------------------------------------------------- manners (less aligned)

_MANNERS_ONSETS = ["ash", "bel", "carr", "dun", "fair", "grey", "hart", "kings", "lang", "mont", "pem", "rad",
                   "stan", "wel", "cres", "elm", "lud", "nor", "west", "brad"]
_MANNERS_ENDS = ["by", "ton", "ford", "ley", "well", "wick", "ham", "field", "more", "combe"]
_MANNERS_GIVEN = ["Anne", "Charlotte", "Eliza", "Harriet", "Jane", "Lydia", "Maria", "Catherine", "Emma", "Fanny",
                  "Louisa", "Georgiana", "Isabella", "Sophia"]
_MANNERS_PLACE_KINDS = ["Park", "Hall", "Court", "Lodge", "House", "Abbey", "Grange", "Manor"]
_MANNERS_OBJS = ["letter", "bonnet", "invitation", "carriage", "fortune", "estate", "piano", "shawl", "portrait",
                 "ribbon", "novel", "proposal", "inheritance", "visit", "ball", "card"]
_MANNERS_VERBS = ["admired", "declined", "received", "mentioned", "praised", "doubted", "accepted", "visited",
                  "neglected", "disliked", "esteemed", "pardoned"]
_MANNERS_ADJS = ["agreeable", "tolerable", "amiable", "proud", "handsome", "sensible", "civil", "fashionable",
                 "insufferable", "genteel", "elegant", "prudent"]
_MANNERS_TIMES = ["in the course of the evening", "before the end of the season", "at breakfast",
                  "after church on Sunday", "within a fortnight", "before the ball at the assembly rooms",
                  "on the following morning", "in the spring"]
_MANNERS_TEMPLATES = [
    "It was generally agreed at {place} that {c1} was the most {adj} person in the county.",
    "{c1} {verb} the {obj} with more composure than {c2} had expected.",
    "{time_cap}, {c2} called at {place}, where {c1} received the visit civilly enough.",
    "\"I cannot think the {obj} {adj},\" said {c1}, \"though {c2} assures me it is.\"",
    "{c3} had an income of some thousands a year and a {adj} opinion of {pos} own merits.",
    "The {obj} from {c2} was read twice over at breakfast by {c1}.",
    "Nothing could be more {adj} than the manner in which {c1} {verb} the {obj}.",
    "{c1} observed to {c2} that the rooms at {place} were uncommonly {adj}.",
    "Whether {c3} {verb} the {obj} or not, {c1} resolved to say nothing of it.",
    "{c2} was not so {adj} as to mention the {obj} before {c3}.",
    "The family at {place} {verb} every {obj} that came from {place2}.",
    "\"You are very {adj}, {c2},\" replied {c1}, \"but I must decline.\"",
    "{time_cap}, the whole party removed to {place}.",
    "{c1} thought {c3} a very {adj} sort of gentleman.",
    "Such a {obj} was not to be {verb} without some reflection, thought {c1}.",
    "{c2} walked to {place} in spite of the weather, and arrived quite {adj}.",
    "Upon the subject of the {obj}, {c1} and {c3} could never agree.",
    "{c3} danced twice with {c1}, which {c2} thought extremely {adj}.",
    "It is a truth seldom doubted at {place} that a {adj} {obj} must be {verb}.",
    "{c1} had {verb} {c2} from the first, though {pos} reasons were never explained.",
]


@dataclass(frozen=True)
class World:
    """The vocabularies and sentence templates from which one text is written."""

    characters: tuple[str, ...]
    places: tuple[str, ...]
    objects: tuple[str, ...]
    creatures: tuple[str, ...]
    verbs: tuple[str, ...]
    adjectives: tuple[str, ...]
    times: tuple[str, ...]
    templates: tuple[str, ...]
    pronouns: tuple[str, ...]  # possessive pronoun per character


def _names(rng: np.random.Generator, onsets: list[str], codas: list[str], n: int, taken: set[str]) -> list[str]:
    """n distinct capitalised two-part names not in `taken`."""
    out: list[str] = []
    while len(out) < n:
        name = (onsets[rng.integers(len(onsets))] + codas[rng.integers(len(codas))]).capitalize()
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


def _split(rng: np.random.Generator, pool: list[str], n: int, half: int) -> list[str]:
    """n items drawn without replacement from half `half` (0 or 1) of a seeded permutation of `pool`."""
    perm = [pool[i] for i in rng.permutation(len(pool))]
    part = perm[: len(pool) // 2] if half == 0 else perm[len(pool) // 2:]
    return part[:n]


def fantasy_world(seed: int, *, half: int = 0, n_characters: int = 12, n_places: int = 10,
                  n_objects: int = 16) -> World:
    """A school-of-magic world; `half` 0 and 1 give disjoint vocabularies and templates of the same genre."""
    if half not in (0, 1):
        raise ValueError(f"half={half}: expected 0 or 1")
    pools = np.random.default_rng([seed, 7])  # the genre split is shared by both halves
    rng = np.random.default_rng([seed, 11, half])
    taken: set[str] = set()
    # both halves draw names from one stream so that they never collide
    name_rng = np.random.default_rng([seed, 13])
    first = _names(name_rng, _FANTASY_ONSETS, _FANTASY_CODAS, 2 * n_characters, taken)
    last = _names(name_rng, _FANTASY_ONSETS, _FANTASY_SURNAME_ENDS, 2 * n_characters, taken)
    towns = _names(name_rng, _FANTASY_ONSETS, _FANTASY_PLACE_ENDS, 2 * n_places, taken)
    sl = slice(half * n_characters, (half + 1) * n_characters)
    characters = [f"{f} {s}" for f, s in zip(first[sl], last[sl])]
    kinds = _split(pools, _FANTASY_PLACE_KINDS, 5, half)
    places = [t if i % 2 else f"the {kinds[i % len(kinds)]} of {t}"
              for i, t in enumerate(towns[half * n_places:(half + 1) * n_places])]
    materials = _split(pools, _FANTASY_MATERIALS, 8, half)
    things = _split(pools, _FANTASY_THINGS, 8, half)
    pairs = [(m, t) for m in materials for t in things]
    objects = [f"{m} {t}" for m, t in (pairs[i] for i in rng.choice(len(pairs), n_objects, replace=False))]
    return World(
        characters=tuple(characters),
        places=tuple(places),
        objects=tuple(objects),
        creatures=tuple(_split(pools, _FANTASY_CREATURES, 8, half)),
        verbs=tuple(_split(pools, _FANTASY_VERBS, 10, half)),
        adjectives=tuple(_split(pools, _FANTASY_ADJS, 10, half)),
        times=tuple(_split(pools, _FANTASY_TIMES, 6, half)),
        templates=tuple(_split(pools, _FANTASY_TEMPLATES, 20, half)),
        pronouns=tuple(("his", "her")[int(b)] for b in rng.integers(0, 2, n_characters)),
    )


def manners_world(seed: int, *, n_characters: int = 12, n_places: int = 10) -> World:
    """A novel-of-manners world: own names, places, vocabulary and longer, more formal templates."""
    rng = np.random.default_rng([seed, 17])
    taken: set[str] = set()
    surnames = _names(rng, _MANNERS_ONSETS, _MANNERS_ENDS, n_characters + n_places, taken)
    characters, pronouns = [], []
    for i, s in enumerate(surnames[:n_characters]):
        if i % 3 == 0:
            characters.append(f"Mr. {s}")
            pronouns.append("his")
        elif i % 3 == 1:
            characters.append(f"Mrs. {s}")
            pronouns.append("her")
        else:
            characters.append(f"Miss {_MANNERS_GIVEN[rng.integers(len(_MANNERS_GIVEN))]} {s}")
            pronouns.append("her")
    places = [f"{s} {_MANNERS_PLACE_KINDS[rng.integers(len(_MANNERS_PLACE_KINDS))]}" for s in surnames[n_characters:]]
    return World(
        characters=tuple(characters),
        places=tuple(places),
        objects=tuple(_MANNERS_OBJS),
        creatures=(),
        verbs=tuple(_MANNERS_VERBS),
        adjectives=tuple(_MANNERS_ADJS),
        times=tuple(_MANNERS_TIMES),
        templates=tuple(_MANNERS_TEMPLATES),
        pronouns=tuple(pronouns),
    )


def mix_worlds(a: World, b: World, share: float, seed: int) -> World:
    """A world taking round(share * n) items of every vocabulary (and of the templates) from `a`, the rest from `b`."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share={share}: expected a fraction in [0, 1]")
    rng = np.random.default_rng([seed, 19])
    mixed = {}
    for f in fields(World):
        if f.name == "pronouns":
            continue
        xs, ys = getattr(a, f.name), getattr(b, f.name)
        n = min(len(xs), len(ys))
        k = int(round(share * n))
        take_a = sorted(rng.choice(len(xs), k, replace=False).tolist())
        items = [xs[i] for i in take_a] + list(ys[: n - k])
        if f.name == "characters":
            mixed["pronouns"] = tuple([a.pronouns[i] for i in take_a] + list(b.pronouns[: n - k]))
        mixed[f.name] = tuple(items)
    return replace(a, **mixed)


#: the fields a world borrows from another: names, places and words (its sentence templates stay its own)
BORROWABLE = ("characters", "places", "objects", "verbs", "adjectives", "times")


def borrow_words(world: World, donor: World, share: float, seed: int) -> World:
    """`world` with round(share * n) of its names, places and words replaced by the donor's (templates kept)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share={share}: expected a fraction in [0, 1]")
    rng = np.random.default_rng([seed, 31])
    out: dict[str, tuple[str, ...]] = {}
    pronouns = list(world.pronouns)
    for name in BORROWABLE:
        own, given = list(getattr(world, name)), getattr(donor, name)
        k = int(round(share * min(len(own), len(given))))
        slots = rng.choice(len(own), k, replace=False).tolist()
        picks = rng.choice(len(given), k, replace=False).tolist()
        for i, j in zip(slots, picks):
            own[i] = given[j]
            if name == "characters":
                pronouns[i] = donor.pronouns[j]
        out[name] = tuple(own)
    return replace(world, pronouns=tuple(pronouns), **out)


def _sentence(world: World, rng: np.random.Generator, hero: int) -> str:
    """One sentence: a random template of `world` with its slots filled; `hero` is the paragraph's main character."""
    template = world.templates[rng.integers(len(world.templates))]
    n_c = len(world.characters)
    others = [i for i in rng.permutation(n_c).tolist() if i != hero]
    p1, p2 = rng.choice(len(world.places), 2, replace=False)
    time = world.times[rng.integers(len(world.times))]
    slots = {
        "c1": world.characters[hero],
        "c2": world.characters[others[0]],
        "c3": world.characters[others[1]],
        "pos": world.pronouns[hero],
        "place": world.places[p1],
        "place2": world.places[p2],
        "obj": world.objects[rng.integers(len(world.objects))],
        "creature": world.creatures[rng.integers(len(world.creatures))] if world.creatures else "",
        "verb": world.verbs[rng.integers(len(world.verbs))],
        "adj": world.adjectives[rng.integers(len(world.adjectives))],
        "time": time,
        "time_cap": time[0].upper() + time[1:],
    }
    s = re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", template.format(**slots))
    # a sentence that starts with a place such as "the Tower of X" is capitalised
    return s[0].upper() + s[1:]


def generate_text(world: World, n_sentences: int, seed: int, *, title: str = "") -> str:
    """A text of n_sentences sentences in paragraphs of 3 to 7 sentences, each around one main character."""
    if n_sentences < 1:
        raise ValueError(f"n_sentences={n_sentences}: expected at least 1")
    rng = np.random.default_rng([seed, 23])
    paragraphs: list[str] = []
    left = n_sentences
    chapter = 0
    while left > 0:
        if len(paragraphs) % 8 == 0:
            chapter += 1
            paragraphs.append(f"Chapter {chapter}")
        k = min(left, int(rng.integers(3, 8)))
        hero = int(rng.integers(len(world.characters)))
        paragraphs.append(" ".join(_sentence(world, rng, hero) for _ in range(k)))
        left -= k
    head = [title] if title else []
    return "\n\n".join(head + paragraphs) + "\n"


def make_texts(*, seed: int = 0, share: float = 0.5, less_share: float = 0.0,
               n_sentences: int = 300) -> dict[str, str]:
    """The forget, aligned and less aligned texts ({"forget", "aligned", "less_aligned"}) for one seed."""
    for name, value in (("share", share), ("less_share", less_share)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}={value}: expected a fraction in [0, 1]")
    forget_world = fantasy_world(seed, half=0)
    aligned_world = mix_worlds(forget_world, fantasy_world(seed, half=1), share, seed)
    less_world = borrow_words(manners_world(seed), forget_world, less_share, seed)
    return {
        "forget": generate_text(forget_world, n_sentences, seed, title="The Silver Key"),
        "aligned": generate_text(aligned_world, n_sentences, seed + 1, title="The Hollow Stair"),
        "less_aligned": generate_text(less_world, n_sentences, seed + 2, title="A Sensible Match"),
    }


def ngram_overlap(a: str, b: str, n: int = 3) -> float:
    """Fraction of the distinct word n-grams of `b` that also occur in `a`."""
    def grams(t: str) -> set[tuple[str, ...]]:
        w = re.findall(r"[a-z]+", t.lower())
        return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}

    gb = grams(b)
    return len(gb & grams(a)) / max(len(gb), 1)
