"""Sentence-classification tasks whose relation the code controls, generated offline.

Every sentence is "the <adjective> <noun> <verb phrase> <place>." from word lists written for this
project. An adjective carries a sentiment s = +1 (positive) or -1 (negative), a noun a topic t = +1
(an animal) or -1 (a machine); verbs and places are filler. A task labels a sentence by its words:

    y = sent * s   for the adjectives of a chosen share,
    y = topic * t  (or, when topic = 0, -sent * s) for the other adjectives;   topic only when sent = 0.

So T1 = Task(sent=1) reads sentiment, Task(topic=1) reads topic (irrelevant to T1), Task(sent=1,
share=0.95) is T1 with 5 % of the adjectives relabelled (aligned), Task(sent=-1, share=0.925) is
T1 reversed except on 7.5 % of them (contradictory), and Task(sent=1, topic=-1, share=0.6) mixes
T1's rule with the reverse of the topic rule (an out-of-domain T' with gamma of both signs). On
sentences whose words are drawn uniformly (every split here), the designed correlation of two tasks
is the mean of y_a * y_b over all word pairs: `designed_alpha`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["POSITIVE", "NEGATIVE", "ANIMALS", "MACHINES", "VERBS", "PLACES", "Task", "Sentences", "sample",
           "designed_alpha"]

POSITIVE = ("cheerful", "gentle", "brilliant", "friendly", "lovely", "graceful", "delightful", "wonderful",
            "kind", "calm", "joyful", "charming", "pleasant", "splendid", "happy", "brave", "clever",
            "generous", "elegant", "marvelous", "superb", "radiant", "lively", "excellent")
NEGATIVE = ("grumpy", "nasty", "awful", "gloomy", "horrible", "clumsy", "dreadful", "miserable", "rude",
            "filthy", "bitter", "cruel", "dull", "wicked", "lazy", "angry", "ugly", "terrible", "hostile",
            "greedy", "sloppy", "boring", "noisy", "vile")
ANIMALS = ("dog", "cat", "horse", "rabbit", "fox", "goat", "sheep", "tiger", "lion", "mouse", "duck", "owl",
           "wolf", "bear", "deer", "pig", "cow", "frog", "snake", "eagle", "donkey", "monkey", "parrot", "zebra")
MACHINES = ("truck", "tractor", "robot", "engine", "printer", "drill", "crane", "bus", "train", "scooter",
            "laptop", "camera", "radio", "motor", "pump", "lawnmower", "blender", "forklift", "heater", "fan",
            "drone", "computer", "elevator", "boiler")
VERBS = ("waited", "stood", "rested", "appeared", "stayed", "was seen", "stopped", "turned up", "sat",
         "was found", "remained", "showed up")
PLACES = ("near the river", "in the yard", "by the station", "at the market", "behind the house",
          "on the hill", "in the garage", "beside the road", "at noon", "in the morning", "after dark",
          "by the old bridge")


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

    def adjective_rule(self) -> np.ndarray:
        """Per adjective (POSITIVE then NEGATIVE), True where the label follows sent * s.

        Exactly round(share * 24) adjectives of each sentiment follow it, chosen by rule_seed, so that
        both labels stay equally frequent."""
        rng = np.random.default_rng(self.rule_seed)
        keep = np.zeros(len(POSITIVE) + len(NEGATIVE), dtype=bool)
        for lo, n in ((0, len(POSITIVE)), (len(POSITIVE), len(NEGATIVE))):
            keep[lo + rng.permutation(n)[: int(round(self.share * n))]] = True
        return keep

    def label_table(self) -> np.ndarray:
        """Labels +-1 of every (adjective, noun) pair, shape (48, 48)."""
        s = np.r_[np.ones(len(POSITIVE)), -np.ones(len(NEGATIVE))]
        t = np.r_[np.ones(len(ANIMALS)), -np.ones(len(MACHINES))]
        if self.sent == 0:
            return np.broadcast_to(self.topic * t, (s.size, t.size)).copy()
        other = (self.topic * t)[None, :] if self.topic else (-self.sent * s)[:, None]
        main = (self.sent * s)[:, None]
        return np.where(self.adjective_rule()[:, None], main, np.broadcast_to(other, (s.size, t.size)))

    def label(self, adj: np.ndarray, noun: np.ndarray) -> np.ndarray:
        """Labels +-1 of sentences given their word indices."""
        return self.label_table()[adj, noun]


@dataclass(frozen=True)
class Sentences:
    """Sentences with the indices of their adjective and noun (into POSITIVE+NEGATIVE, ANIMALS+MACHINES)."""

    text: tuple[str, ...]
    adj: np.ndarray
    noun: np.ndarray

    def labels(self, task: Task) -> np.ndarray:
        return task.label(self.adj, self.noun)


def sample(n: int, seed: int) -> Sentences:
    """n sentences with every word drawn uniformly (so sentiment and topic are independent), from seed."""
    if n < 1:
        raise ValueError(f"n={n}: expected at least one sentence")
    rng = np.random.default_rng(seed)
    adjs, nouns = POSITIVE + NEGATIVE, ANIMALS + MACHINES
    adj, noun = rng.integers(len(adjs), size=n), rng.integers(len(nouns), size=n)
    verb, place = rng.integers(len(VERBS), size=n), rng.integers(len(PLACES), size=n)
    text = tuple(f"the {adjs[a]} {nouns[b]} {VERBS[v]} {PLACES[q]}." for a, b, v, q in zip(adj, noun, verb, place))
    return Sentences(text, adj, noun)


def designed_alpha(a: Task, b: Task) -> float:
    """The correlation of two tasks' labels over all word pairs, E[y_a y_b]: what alpha-hat is for models that learn the rules."""
    return float((a.label_table() * b.label_table()).mean())
