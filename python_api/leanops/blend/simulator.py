"""A page simulator with a known ground truth: users, ads and organic items, a true click model with
externalities between neighbouring slots, advertisers' true values per click, and randomised logging.

True click probability of the item j shown at slot p of a page (the ground truth every result is scored on):
    a_j   = sigmoid(affinity * <u, t_j> + q_j - ad_penalty * is_ad_j)        attraction (relevance)
    e_0   = 1,  e_{p+1} = e_p * decay * (1 - quit * (1 - a_{j_p}))           examination: an irrelevant item
                                                                             makes the user leave (cascade)
    share = 1 / (1 + crowding * sum_{k in p-1, p+1} max(0, <t_j, t_k>)^2 * a_k)   similar attractive
                                                                             neighbours take clicks
    ctr_p = e_p * a_j * share
u (user) and t (item topics) are unit vectors; topics come from a few clusters so similar items are common.
So two similar ads side by side take clicks from each other (negative externality) and a relevant ad keeps
the user scrolling (positive externality, which can make a VCG price negative).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Requests:
    """R page requests of M candidates each: ads first (0..n_ads-1), then organic items in the
    recommender's ranking order."""

    user: torch.Tensor  # [R, k] unit interest vectors
    topic: torch.Tensor  # [R, M, k] unit item topic vectors
    quality: torch.Tensor  # [R, M] true item quality q_j
    quality_obs: torch.Tensor  # [R, M] the platform's noisy estimate of q_j (a feature)
    is_ad: torch.Tensor  # [R, M] bool
    value: torch.Tensor  # [R, M] advertisers' true value per click (0 for organic items)

    def __len__(self) -> int:
        return self.user.shape[0]

    def item_features(self) -> torch.Tensor:
        """What a click model sees of each candidate: topic, noisy quality, is-ad flag: [R, M, k + 2]."""
        return torch.cat([self.topic, self.quality_obs[..., None], self.is_ad[..., None].float()], -1)


@dataclass
class Simulator:
    n_topics: int = 6  # dimension of user and topic vectors
    n_clusters: int = 4
    cluster_spread: float = 0.35
    affinity: float = 2.5
    ad_penalty: float = 0.7
    decay: float = 0.92
    quit: float = 0.35
    crowding: float = 2.0
    quality_noise: float = 0.3
    value_scale: float = 1.0

    def sample(self, n_requests: int, n_ads: int, n_org: int, generator: torch.Generator) -> Requests:
        g = generator
        r, m, k = n_requests, n_ads + n_org, self.n_topics
        unit = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731
        centres = unit(torch.randn(r, self.n_clusters, k, generator=g))
        which = torch.randint(self.n_clusters, (r, m), generator=g)
        topic = unit(torch.gather(centres, 1, which[..., None].expand(-1, -1, k))
                     + self.cluster_spread * torch.randn(r, m, k, generator=g))
        user = unit(torch.randn(r, k, generator=g) + centres[:, 0])  # users lean to one cluster of the page
        quality = 0.8 * torch.randn(r, m, generator=g) - 0.5
        quality_obs = quality + self.quality_noise * torch.randn(r, m, generator=g)
        is_ad = torch.zeros(r, m, dtype=torch.bool)
        is_ad[:, :n_ads] = True
        value = torch.where(is_ad, self.value_scale * torch.exp(0.5 * torch.randn(r, m, generator=g)), 0.0)
        # the recommender ranks organic items by its own (noisy) relevance estimate
        est = self.affinity * (topic * user[:, None]).sum(-1) + quality_obs
        order = torch.argsort(est[:, n_ads:], dim=1, descending=True) + n_ads
        perm = torch.cat([torch.arange(n_ads).expand(r, -1), order], 1)
        take = lambda x: torch.gather(x, 1, perm if x.dim() == 2 else perm[..., None].expand_as(x))  # noqa: E731
        return Requests(user, take(topic), take(quality), take(quality_obs), is_ad, take(value))

    def attraction(self, user, topic, quality, is_ad) -> torch.Tensor:
        return torch.sigmoid(self.affinity * (topic * user[..., None, :]).sum(-1) + quality
                             - self.ad_penalty * is_ad.float())

    def page_ctr(self, user, topic, quality, is_ad) -> torch.Tensor:
        """True click probabilities of pages: user [S, k], topic [S, n, k], quality/is_ad [S, n] -> [S, n]."""
        a = self.attraction(user, topic, quality, is_ad)
        stay = self.decay * (1 - self.quit * (1 - a[:, :-1]))
        exam = torch.cat([torch.ones_like(a[:, :1]), torch.cumprod(stay, 1)], 1)
        sim = ((topic[:, 1:] * topic[:, :-1]).sum(-1).clamp(min=0)) ** 2  # [S, n-1] neighbour pairs
        crowd = torch.zeros_like(a)
        crowd[:, 1:] += sim * a[:, :-1]
        crowd[:, :-1] += sim * a[:, 1:]
        return exam * a / (1 + self.crowding * crowd)

    def slate_ctr(self, requests: Requests, request_idx: torch.Tensor, slates: torch.Tensor) -> torch.Tensor:
        """True click probabilities of ``slates [S, n]`` (candidate indices) of requests ``request_idx [S]``."""
        r = request_idx[:, None]
        return self.page_ctr(requests.user[request_idx], requests.topic[r, slates], requests.quality[r, slates],
                             requests.is_ad[r, slates])

    def click_model(self, requests: Requests, i: int):
        """The true click model of request i in ``allocate``'s form: slates [S, n] -> [S, n]."""
        def model(slates):
            return self.slate_ctr(requests, torch.full((slates.shape[0],), i, dtype=torch.long), slates)
        return model


@dataclass
class Logs:
    """Logged pages: which request, which candidates in which slots, and the clicks drawn from the truth."""

    request: torch.Tensor  # [L] request index
    slates: torch.Tensor  # [L, n] candidate indices
    clicks: torch.Tensor  # [L, n] float 0/1
    true_ctr: torch.Tensor  # [L, n] the ground truth, for the Bayes-optimal ceiling


def random_slates(is_ad_row: torch.Tensor, n_pages: int, n_slots: int, max_ads: int,
                  generator: torch.Generator) -> torch.Tensor:
    """Randomised logging policy: 0..max_ads random ads at random slots, the rest random organic items
    (half of the pages keep the organic ranking order, half shuffle it), so the logs cover every position,
    neighbour and page mix the allocation may choose."""
    g = generator
    ads = torch.nonzero(is_ad_row).flatten()
    orgs = torch.nonzero(~is_ad_row).flatten()
    out = torch.empty(n_pages, n_slots, dtype=torch.long)
    n_ad = torch.randint(0, min(max_ads, len(ads)) + 1, (n_pages,), generator=g)
    for p in range(n_pages):
        k = int(n_ad[p])
        pick_org = orgs[torch.randperm(len(orgs), generator=g)[:n_slots - k]]
        if torch.rand(1, generator=g) < 0.5:
            pick_org = pick_org.sort().values
        pick_ad = ads[torch.randperm(len(ads), generator=g)[:k]]
        ad_pos = torch.randperm(n_slots, generator=g)[:k]
        row = torch.empty(n_slots, dtype=torch.long)
        mask = torch.zeros(n_slots, dtype=torch.bool)
        mask[ad_pos] = True
        row[ad_pos] = pick_ad
        row[~mask] = pick_org
        out[p] = row
    return out


def log_traffic(sim: Simulator, requests: Requests, pages_per_request: int, n_slots: int, max_ads: int,
                generator: torch.Generator) -> Logs:
    slates = torch.cat([random_slates(requests.is_ad[i], pages_per_request, n_slots, max_ads, generator)
                        for i in range(len(requests))])
    request = torch.arange(len(requests)).repeat_interleave(pages_per_request)
    ctr = sim.slate_ctr(requests, request, slates)
    clicks = (torch.rand(ctr.shape, generator=generator) < ctr).float()
    return Logs(request, slates, clicks, ctr)
