"""Sentence-classification tasks whose relation the code controls, generated offline, each on its own sentences.

Every sentence is "the <adjective> <noun> <verb phrase> <place>." from word lists written for this
project. An adjective carries a sentiment s = +1 (positive), -1 (negative) or 0 (neutral: sizes,
colours), a noun a topic t = +1 (an animal), -1 (a machine) or 0 (an object that is neither). A task
labels a sentence by its words:

    y = sent * s   for the adjectives of a chosen share,
    y = topic * t  (or, when topic = 0, -sent * s) for the other adjectives;   topic only when sent = 0.

Each task has its own sentences, as each task of the paper has its own data (its discriminative
pattern, and no other task's): its *domain* draws the words its rule reads from the labelled lists
and the others from the neutral lists. T1 = Task(sent=1) reads sentiment on "sentiment" sentences
(neutral nouns); Task(topic=1) reads topic on "topic" sentences (neutral adjectives), irrelevant to
T1; Task(sent=1, share=0.95) is T1 with 5 % of the adjectives relabelled (aligned), Task(sent=-1,
share=0.925) is T1 reversed except on 7.5 % of them (contradictory), both on T1's sentences; and
Task(sent=1, topic=-1, share=0.6) mixes T1's rule with the reverse of the topic rule on "both"
sentences (an out-of-domain T' with gamma of both signs). A rule gives 0 where its word is neutral.
The designed correlation of two tasks is the mean of y_a * y_b over all word pairs of their domains:
`designed_alpha`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["POSITIVE", "NEGATIVE", "NEUTRAL_ADJECTIVES", "ANIMALS", "MACHINES", "OBJECTS", "VERBS", "PLACES",
           "DOMAINS", "Task", "Sentences", "sample", "designed_alpha"]

POSITIVE = ("cheerful", "gentle", "brilliant", "friendly", "lovely", "graceful", "delightful", "wonderful",
            "kind", "calm", "joyful", "charming", "pleasant", "splendid", "happy", "brave", "clever",
            "generous", "elegant", "marvelous", "superb", "radiant", "lively", "excellent")
NEGATIVE = ("grumpy", "nasty", "awful", "gloomy", "horrible", "clumsy", "dreadful", "miserable", "rude",
            "filthy", "bitter", "cruel", "dull", "wicked", "lazy", "angry", "ugly", "terrible", "hostile",
            "greedy", "sloppy", "boring", "noisy", "vile")
NEUTRAL_ADJECTIVES = ("small", "large", "tall", "short", "young", "old", "red", "blue", "green", "grey", "brown",
                      "white", "black", "yellow", "orange", "purple", "round", "narrow", "wide", "distant",
                      "nearby", "second", "other", "usual")
ANIMALS = ("dog", "cat", "horse", "rabbit", "fox", "goat", "sheep", "tiger", "lion", "mouse", "duck", "owl",
           "wolf", "bear", "deer", "pig", "cow", "frog", "snake", "eagle", "donkey", "monkey", "parrot", "zebra")
MACHINES = ("truck", "tractor", "robot", "engine", "printer", "drill", "crane", "bus", "train", "scooter",
            "laptop", "camera", "radio", "motor", "pump", "lawnmower", "blender", "forklift", "heater", "fan",
            "drone", "computer", "elevator", "boiler")
OBJECTS = ("box", "chair", "table", "bottle", "bag", "book", "cup", "rock", "shelf", "basket", "bucket", "crate",
           "jar", "sign", "bench", "door", "barrel", "ladder", "pillow", "blanket", "brick", "coin", "rope", "hat")
VERBS = ("waited", "stood", "rested", "appeared", "stayed", "was seen", "stopped", "turned up", "sat",
         "was found", "remained", "showed up")
PLACES = ("near the river", "in the yard", "by the station", "at the market", "behind the house",
          "on the hill", "in the garage", "beside the road", "at noon", "in the morning", "after dark",
          "by the old bridge")


ADJECTIVES = POSITIVE + NEGATIVE + NEUTRAL_ADJECTIVES
NOUNS = ANIMALS + MACHINES + OBJECTS
_S = np.r_[np.ones(len(POSITIVE)), -np.ones(len(NEGATIVE)), np.zeros(len(NEUTRAL_ADJECTIVES))]
_T = np.r_[np.ones(len(ANIMALS)), -np.ones(len(MACHINES)), np.zeros(len(OBJECTS))]
_LABELLED = np.arange(len(POSITIVE) + len(NEGATIVE))  # (= len(ANIMALS) + len(MACHINES), checked below)
_NEUTRAL = np.arange(_LABELLED.size, len(ADJECTIVES))
assert len(ANIMALS) + len(MACHINES) == _LABELLED.size and len(OBJECTS) == len(NEUTRAL_ADJECTIVES)
#: domain -> (adjective indices, noun indices) its sentences draw from (into ADJECTIVES, NOUNS)
DOMAINS = {"sentiment": (_LABELLED, _NEUTRAL), "topic": (_NEUTRAL, _LABELLED), "both": (_LABELLED, _LABELLED)}


@dataclass(frozen=True)
class Task:
    """A labelling rule over (adjective, noun): sentiment sign, topic sign, share of adjectives ruled by sentiment."""

    sent: int = 1
    topic: int = 0
    share: float = 1.0
    rule_seed: int = 0

    def __post_init__(self) -> None:
        if self.sent not in (-1, 0, 1) or self.topic not in (-1, 0, 1) or (self.sent == 0 and self.topic == 0):
            raise ValueError(f"sent={self.sent}, topic={self.topic}: expected signs in {{-1, 0, 1}}, not both 0")
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"share={self.share}: expected a fraction in [0, 1]")
        if self.sent == 0 and self.share != 1.0:
            raise ValueError(f"sent=0 with share={self.share}: a topic-only task has no adjectives to share out")

    @property
    def domain(self) -> str:
        """The sentences of this task: 'sentiment', 'topic' or 'both' (the word classes its rule reads)."""
        return "both" if self.sent and self.topic else ("sentiment" if self.sent else "topic")

    def adjective_rule(self) -> np.ndarray:
        """Per adjective (POSITIVE, NEGATIVE, then the neutral ones), True where the label follows sent * s.

        Exactly round(share * 24) adjectives of each sentiment follow it, chosen by rule_seed, so that
        both labels stay equally frequent."""
        rng = np.random.default_rng(self.rule_seed)
        keep = np.ones(len(ADJECTIVES), dtype=bool)
        for lo, n in ((0, len(POSITIVE)), (len(POSITIVE), len(NEGATIVE))):
            keep[lo:lo + n] = False
            keep[lo + rng.permutation(n)[: int(round(self.share * n))]] = True
        return keep

    def label_table(self) -> np.ndarray:
        """Labels of every (adjective, noun) pair, shape (72, 72): +-1 on the task's domain, 0 where its word is neutral."""
        s, t = _S, _T
        if self.sent == 0:
            return np.broadcast_to(self.topic * t, (s.size, t.size)).copy()
        other = (self.topic * t)[None, :] if self.topic else (-self.sent * s)[:, None]
        main = (self.sent * s)[:, None]
        return np.where(self.adjective_rule()[:, None], main, np.broadcast_to(other, (s.size, t.size)))

    def label(self, adj: np.ndarray, noun: np.ndarray) -> np.ndarray:
        """Labels of sentences given their word indices."""
        return self.label_table()[adj, noun]


@dataclass(frozen=True)
class Sentences:
    """Sentences of one domain with the indices of their adjective and noun (into ADJECTIVES, NOUNS)."""

    text: tuple[str, ...]
    adj: np.ndarray
    noun: np.ndarray
    domain: str = "both"

    def labels(self, task: Task) -> np.ndarray:
        """task's labels +-1 of these sentences; a clear error where a sentence lacks the word its rule reads."""
        y = task.label(self.adj, self.noun)
        if (y == 0).any():
            raise ValueError(f"{task} labels {task.domain!r} sentences (or 'both'): these are {self.domain!r} "
                             "sentences, whose neutral words it cannot read")
        return y


def sample(n: int, seed: int, domain: str = "both") -> Sentences:
    """n sentences of a domain with every word drawn uniformly from its lists (so sentiment and topic are
    independent), from seed."""
    if n < 1:
        raise ValueError(f"n={n}: expected at least one sentence")
    if domain not in DOMAINS:
        raise ValueError(f"domain={domain!r}: expected one of {list(DOMAINS)}")
    adjs, nouns = DOMAINS[domain]
    rng = np.random.default_rng([seed, list(DOMAINS).index(domain)])
    adj, noun = adjs[rng.integers(adjs.size, size=n)], nouns[rng.integers(nouns.size, size=n)]
    verb, place = rng.integers(len(VERBS), size=n), rng.integers(len(PLACES), size=n)
    text = tuple(f"the {ADJECTIVES[a]} {NOUNS[b]} {VERBS[v]} {PLACES[q]}." for a, b, v, q in zip(adj, noun, verb, place))
    return Sentences(text, adj, noun, domain)


def designed_alpha(a: Task, b: Task, domain: str | None = None) -> float:
    """E[y_a y_b] over every word pair of a domain (default: of both tasks' domains, each weighted equally):
    what alpha-hat is for models that learn the rules and give nothing to a neutral word."""
    doms = [domain] if domain else sorted({a.domain, b.domain})
    prod = a.label_table() * b.label_table()
    return float(np.mean([prod[np.ix_(*DOMAINS[d])].mean() for d in doms]))
