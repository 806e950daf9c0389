"""A product catalogue with a known ground truth for description generation.

Every product has a category, attributes (brand, colour, material and one or two category-specific keys),
a title, a set of *cared aspects* (what buyers care about, e.g. "battery life"), reviews and a reference
description. The ground truth is explicit:
- **aspects**: each attribute value has an affinity to some of its category's aspects; a product's aspects
  are the ``n_aspects`` highest of ``affinity + noise`` (Gumbel, ``aspect_noise``), so the attributes
  predict them only in part. Reviews mention exactly the product's aspects (plus filler), so reviews reveal
  what the attributes leave open.
- **long-tail products** (``test_longtail``) have no reviews and noise-free aspects: the ``n_aspects``
  highest affinities, i.e. what follows from attributes and category (the Bayes-optimal guess is exact).
- **descriptions** state the brand, colour and material (attribute facts) and every cared aspect, each in
  one of several sentence patterns, in random order.
- **unseen brands**: test products take brands from a pool disjoint from training brands (``unseen_brand_frac``
  of them), made of other syllables, some spelled with letters that never occur in training text (out of
  vocabulary for any tokenizer trained on the training split, so only copying can produce them). Some
  training brands hold an odd letter too (another set), so copying odd letters is learnt in training.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

CATEGORIES = {
    "headphones": dict(noun="headphones", keys={"fit": ["over-ear", "on-ear", "in-ear"],
                                                 "connection": ["wireless", "wired"]},
                       aspects={"battery life": ["the battery lasts for days", "battery life is superb"],
                                "sound quality": ["the sound is crisp and deep", "great sound quality"],
                                "noise cancelling": ["it blocks out the noise", "noise cancelling works well"],
                                "comfort": ["they stay comfortable all day", "very comfortable to wear"],
                                "durability": ["they survived many drops", "built to last"]}),
    "shoes": dict(noun="shoes", keys={"size": ["size 38", "size 40", "size 42", "size 44"],
                                      "sole": ["rubber sole", "foam sole"]},
                  aspects={"fits true to size": ["the size fits exactly", "fits true to size"],
                           "grip": ["no slipping on wet floors", "the grip is excellent"],
                           "breathability": ["my feet stay dry", "very breathable"],
                           "comfort": ["comfortable from the first day", "very comfortable to wear"],
                           "durability": ["still like new after months", "built to last"]}),
    "backpack": dict(noun="backpack", keys={"capacity": ["20 litres", "30 litres", "40 litres"],
                                            "closure": ["zip closure", "buckle closure"]},
                     aspects={"storage space": ["everything fits inside", "plenty of storage space"],
                              "waterproof": ["my laptop stayed dry in the rain", "truly waterproof"],
                              "shoulder comfort": ["the straps do not dig in", "easy on the shoulders"],
                              "durability": ["the seams hold up", "built to last"],
                              "light weight": ["you barely feel it", "very light to carry"]}),
    "kettle": dict(noun="kettle", keys={"capacity": ["1 litre", "1.5 litres", "2 litres"],
                                        "power": ["1500 watts", "2200 watts"]},
                   aspects={"boils fast": ["water boils in a minute", "it boils fast"],
                            "quiet": ["barely makes a sound", "very quiet when boiling"],
                            "easy to clean": ["no limescale builds up", "easy to clean"],
                            "safety": ["switches off by itself", "safe to use around kids"],
                            "durability": ["still works after years", "built to last"]}),
    "lamp": dict(noun="lamp", keys={"bulb": ["led bulb", "halogen bulb"],
                                    "mount": ["desk mount", "floor stand", "wall mount"]},
                 aspects={"brightness": ["it lights the whole room", "very bright light"],
                          "adjustable": ["the arm turns any way", "easy to adjust"],
                          "energy saving": ["my power bill went down", "saves energy"],
                          "easy setup": ["set up in two minutes", "easy to set up"],
                          "durability": ["solid and sturdy", "built to last"]}),
}
COLOURS = ["black", "white", "red", "blue", "green", "grey", "silver", "brown"]
MATERIALS = ["plastic", "leather", "steel", "aluminium", "canvas", "bamboo", "glass", "nylon"]
FACT_KEYS = ("brand", "colour", "material")  # stated in every description; scored by attribute-fact accuracy
_TRAIN_SYLLABLES = ["ka", "lo", "mi", "ta", "ro", "ne", "vi", "su", "da", "pe", "zo", "ri"]
_UNSEEN_SYLLABLES = ["qu", "xe", "jy", "wo", "fa", "hu", "bi", "ge", "cy", "ol"]
_UNSEEN_LETTERS = ["å", "ø", "ü", "ñ", "é", "ß"]  # absent from every training text
_TRAIN_LETTERS = ["ä", "ö", "è"]  # some training brands hold one: the decoder learns to copy odd letters
_FACT_PATTERNS = ["the {brand} {noun} comes in {colour} {material} .",
                  "made of {colour} {material} , this {noun} is by {brand} .",
                  "{brand} makes this {noun} in {material} , coloured {colour} .",
                  "a {colour} {noun} from {brand} , built from {material} ."]
_ASPECT_PATTERNS = ["buyers care about {aspect} .", "it is known for {aspect} .", "customers praise its {aspect} .",
                    "expect {aspect} ."]
_REVIEW_FILLER = ["arrived on time", "good value", "nice packaging", "would buy again", "as described"]


@dataclass
class Product:
    category: str
    attributes: dict  # key -> value, insertion order: brand, colour, material, category keys
    title: str
    aspects: list  # the cared aspects (ground truth), in the category's order
    reviews: list = field(default_factory=list)
    description: str = ""
    brand_seen: bool = True  # False: the brand never occurs in the training split


@dataclass
class Catalogue:
    train: list
    valid: list
    test_reviewed: list
    test_longtail: list
    affinity: dict  # (category, attribute value) -> {aspect: weight}
    seed: int

    def training_texts(self, mask_brands: bool = True) -> list:
        """Every text of the training split (what a tokenizer may be trained on). ``mask_brands`` leaves
        brand names out: brands are an open class, so their capitals stay out of the vocabulary and the
        decoder learns, on training brands already, to produce brand names by copying."""
        out = []
        for p in self.train:
            texts = [p.title, p.description, *p.reviews, *map(str, p.attributes.values()), *p.attributes]
            brand = p.attributes["brand"]
            out += [" ".join(w for w in t.split() if w != brand) if mask_brands else t for t in texts]
        return [t for t in out if t]


def _brand(rng: random.Random, syllables, odd_letter: bool, letters=_UNSEEN_LETTERS) -> str:
    name = "".join(rng.choice(syllables) for _ in range(rng.choice((2, 3))))
    if odd_letter:
        i = rng.randrange(1, len(name))
        name = name[:i] + rng.choice(letters) + name[i:]
    return name.capitalize()


def _affinity(rng: random.Random) -> dict:
    """Each attribute value favours one or two aspects of its category (weights 1-2); brands stay neutral."""
    aff = {}
    for cat, spec in CATEGORIES.items():
        names = list(spec["aspects"])
        for value in COLOURS + MATERIALS + [v for vals in spec["keys"].values() for v in vals]:
            aff[(cat, value)] = {a: rng.uniform(1.0, 2.0) for a in rng.sample(names, rng.choice((1, 2)))}
    return aff


def _aspects(rng, cat, attrs, affinity, n_aspects, noise):
    names = list(CATEGORIES[cat]["aspects"])
    score = {a: 0.0 for a in names}
    for value in attrs.values():
        for a, w in affinity.get((cat, value), {}).items():
            score[a] += w
    if noise > 0:  # Gumbel noise: top-k of affinity + noise samples k aspects without replacement
        import math
        score = {a: s - noise * math.log(-math.log(rng.uniform(1e-12, 1 - 1e-12))) for a, s in score.items()}
    top = sorted(names, key=lambda a: (-score[a], names.index(a)))[:n_aspects]
    return [a for a in names if a in top]


def attribute_aspects(catalogue: "Catalogue", product: Product) -> list:
    """The aspects that follow from the product's category and attributes alone (noise-free top-k): the
    Bayes-optimal guess without reviews, and exactly a long-tail product's aspects."""
    return _aspects(None, product.category, product.attributes, catalogue.affinity, len(product.aspects), 0.0)


def _describe(rng, cat, attrs, aspects) -> str:
    spec = CATEGORIES[cat]
    fact = rng.choice(_FACT_PATTERNS).format(noun=spec["noun"], **attrs)
    extra_key = rng.choice(list(spec["keys"]))
    extra = f"it has {attrs[extra_key]} ."
    sentences = [rng.choice(_ASPECT_PATTERNS).format(aspect=a) for a in aspects]
    rng.shuffle(sentences)
    return " ".join([fact, extra] + sentences)


def _review(rng, cat, aspect) -> str:
    phrase = rng.choice(CATEGORIES[cat]["aspects"][aspect])
    return f"{phrase} , {rng.choice(_REVIEW_FILLER)} ."


def _product(rng, brand, affinity, n_aspects, noise, n_reviews) -> Product:
    cat = rng.choice(list(CATEGORIES))
    spec = CATEGORIES[cat]
    attrs = {"brand": brand, "colour": rng.choice(COLOURS), "material": rng.choice(MATERIALS)}
    attrs.update({k: rng.choice(v) for k, v in spec["keys"].items()})
    aspects = _aspects(rng, cat, attrs, affinity, n_aspects, noise)
    title = f"{brand} {attrs['colour']} {spec['noun']} {' '.join(attrs[k] for k in spec['keys'])}"
    reviews = []
    for i in range(n_reviews):  # every aspect is mentioned once before any repeats; one review may be filler
        if i < len(aspects):
            reviews.append(_review(rng, cat, aspects[i]))
        else:
            reviews.append(rng.choice(_REVIEW_FILLER) + " .")
    rng.shuffle(reviews)
    return Product(cat, attrs, title, aspects, reviews, _describe(rng, cat, attrs, aspects))


def generate(n_train: int = 2000, n_valid: int = 200, n_test: int = 300, n_aspects: int = 2,
             aspect_noise: float = 1.0, reviews_per_product: tuple = (2, 4), unseen_brand_frac: float = 0.5,
             n_train_brands: int = 60, seed: int = 0) -> Catalogue:
    """Train / valid / test-with-reviews / long-tail-without-reviews splits (``n_test`` products each)."""
    for name, value in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not 1 <= n_aspects <= 5:
        raise ValueError(f"n_aspects must be in [1, 5] (aspects per category), got {n_aspects}")
    if aspect_noise < 0:
        raise ValueError(f"aspect_noise must be >= 0, got {aspect_noise}")
    if not 0 <= unseen_brand_frac <= 1:
        raise ValueError(f"unseen_brand_frac must be in [0, 1], got {unseen_brand_frac}")
    lo, hi = reviews_per_product
    if not 1 <= lo <= hi:
        raise ValueError(f"reviews_per_product must be (lo, hi) with 1 <= lo <= hi, got {reviews_per_product}")
    rng = random.Random(seed)
    affinity = _affinity(random.Random(10_000 + seed))
    train_brands = sorted({_brand(rng, _TRAIN_SYLLABLES, rng.random() < 0.3, _TRAIN_LETTERS)
                           for _ in range(n_train_brands)})
    unseen = sorted({_brand(rng, _UNSEEN_SYLLABLES, rng.random() < 0.3) for _ in range(n_train_brands)})

    def make(n, noise, with_reviews, unseen_frac):
        out = []
        for _ in range(n):
            new = rng.random() < unseen_frac
            p = _product(rng, rng.choice(unseen if new else train_brands), affinity, n_aspects, noise,
                         rng.randint(lo, hi) if with_reviews else 0)
            p.brand_seen = not new
            out.append(p)
        return out

    return Catalogue(train=make(n_train, aspect_noise, True, 0.0), valid=make(n_valid, aspect_noise, True, 0.0),
                     test_reviewed=make(n_test, aspect_noise, True, unseen_brand_frac),
                     test_longtail=make(n_test, 0.0, False, unseen_brand_frac), affinity=affinity, seed=seed)
