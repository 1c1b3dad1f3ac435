"""One step of a tiny economy (2 consumers, 2 firms, a government) worked out by hand from the spec.

Every expected number is written below as arithmetic on the inputs, with the spec section it comes
from (docs/model.md). Two envs run side by side with the same economy; only t differs
(env 0 is in its last step, env 1 is not), so the done flag and t/T are checked too.

Inputs (both envs):
  prices (1000, 500), wages (11, 22), stocks (3, 120), flags (0, 1), capital (5000, 10000)
  firm budgets (44000, 1000), consumer budgets (2000, 10000), income tax 0.2, corporate tax 0.4
  consumer 0: demand (2, 4), hours index 2 (520 h), works at firm 0
  consumer 1: demand (4, 10), hours index 4 (1040 h), works at firm 1
  firm 0 posts (price 2000, wage 11), firm 1 posts (price 0, wage 33); government posts (0.6, 0.0)
What it exercises: consumer 0's budget binds, good 0 is rationed, firm 1 (price 500 = p_export)
exports, firm 0 makes a loss (no investment, no corporate tax), firm 1 a taxed profit (open) or a
loss that drives its budget negative (closed), interest skips the negative budget.
"""

from __future__ import annotations

import math

import pytest
import torch

from rbc_ray.economy import Actions, EconomyConfig, Params, State, step

ETA = 0.1
THETA = (0.01, 0.01 * (1 - 1 / 2) ** 0.25)   # Consumers: theta_j = 0.01 (1 - j/N)^(1/4), N = 2
ALPHA = (0.2, 0.3)                          # Firms: alpha = [0.2, 0.3, ...] repeated
T = 10


def u(c: float) -> float:
    """Consumers: ((c + 1)^(1 - eta) - 1) / (1 - eta)."""
    return ((c + 1) ** (1 - ETA) - 1) / (1 - ETA)


def digits(x: float) -> list[float]:
    """Observations: (x mod 10^(j+1)) / 10^(j+1), j = 0..9."""
    return [(x % 10 ** (j + 1)) / 10 ** (j + 1) for j in range(10)]


def tiny_economy(open_economy: bool, interest_rate: float = 0.0):
    cfg = EconomyConfig(n_consumers=2, n_firms=2, open_economy=open_economy,
                        interest_rate=interest_rate, dtype="float64")
    params = Params.build(cfg)

    def t2(*rows):
        return torch.tensor(rows, dtype=torch.float64)

    state = State(
        price=t2([1000.0, 500.0], [1000.0, 500.0]), wage=t2([11.0, 22.0], [11.0, 22.0]),
        stock=t2([3.0, 120.0], [3.0, 120.0]), overdemanded=t2([0.0, 1.0], [0.0, 1.0]),
        capital=t2([5000.0, 10000.0], [5000.0, 10000.0]),
        firm_budget=t2([44000.0, 1000.0], [44000.0, 1000.0]),
        consumer_budget=t2([2000.0, 10000.0], [2000.0, 10000.0]),
        income_tax=t2(0.2, 0.2), corporate_tax=t2(0.4, 0.4), t=t2(9.0, 3.0),
        log_tfp=t2(0.0, 0.0), theta_factor=t2(1.0, 1.0))
    # consumer heads: demand firm 0, demand firm 1, hours index, employer
    consumer = [[2, 4, 2, 0], [4, 10, 4, 1]]
    firm = [[4, 1], [0, 3]]       # (2000, 11), (0, 33)
    government = [3, 0]           # income tax 0.6, corporate tax 0.0
    actions = Actions(consumer=torch.tensor([consumer, consumer]), firm=torch.tensor([firm, firm]),
                      government=torch.tensor([government, government]))
    return params, state, actions


# ---- the hand computation, shared by open and closed --------------------------------------------
# Consumers / order 1: consumer 0 wants 2*1000 + 4*500 = 4000 > budget 2000 -> scale 2000/4000 = 0.5
#   -> demand (1, 2); consumer 1 wants 4*1000 + 10*500 = 9000 <= 10000 -> unscaled (4, 10)
# Order 2: D_0 = 1 + 4 = 5, D_1 = 2 + 10 = 12; labour L_0 = 520, L_1 = 1040
# Firms / order 3: D_0 = 5 > stock 3 -> rationed by 3/5 = 0.6; D_1 = 12 <= 120 -> not rationed
CONSUMED = [[1 * 0.6, 2.0], [4 * 0.6, 10.0]]
SOLD = [3.0, 12.0]
SPENDING = [0.6 * 1000 + 2 * 500, 2.4 * 1000 + 10 * 500]                 # 1600, 7400
HOURS = [520.0, 1040.0]
LABOUR = [520.0, 1040.0]
INCOME = [11 * 520.0, 22 * 1040.0]                                      # 5720, 22880
INCOME_TAX = [0.2 * INCOME[0], 0.2 * INCOME[1]]                         # 1144, 4576
# Consumers: utility - theta/2 h (linear labour disutility, the code's default)
CONSUMER_REWARD = [u(0.6) + u(2.0) - THETA[0] / 2 * 520, u(2.4) + u(10.0) - THETA[1] / 2 * 1040]
# Firms: Y = 0.01 K^(1-alpha) L^alpha with this step's capital and labour
PRODUCED = [0.01 * 5000 ** (1 - ALPHA[0]) * 520 ** ALPHA[0],
            0.01 * 10000 ** (1 - ALPHA[1]) * 1040 ** ALPHA[1]]
WAGE_BILL = [520 * 11.0, 1040 * 22.0]                                  # 5720, 22880
# firm 0: revenue 3*1000 = 3000, gross 3000 - 5720 = -2720 -> dK = max(0.1 * -2720, 0) = 0,
#   profit -2720, corporate tax 0.4 * max(-2720, 0) = 0, reward -2720
F0 = dict(revenue=3000.0, investment=0.0, profit=-2720.0, reward=-2720.0)

CASES = {
    # Open vs closed: firm 1's price 500 >= p_export 500 -> exports min(100, 120 - 12) = 100
    #   revenue (12 + 100) * 500 = 56000, gross 56000 - 22880 = 33120, dK = 3312, profit 29808,
    #   corporate tax 0.4 * 29808 = 11923.2, reward 17884.8
    # Government: taxes 1144 + 4576 + 11923.2 = 17643.2, lump sum 17643.2 / 2 = 8821.6
    "open": dict(open_economy=True, r=0.0, exported=[0.0, 100.0],
                 f1=dict(revenue=56000.0, investment=3312.0, profit=29808.0, reward=17884.8),
                 corp_tax=11923.2, lump=8821.6),
    # Closed: firm 1 revenue 12 * 500 = 6000, gross 6000 - 22880 = -16880 -> no dK, no tax;
    #   taxes 5720, lump sum 2860; interest 0.1 on positive budgets only (Consumers / Firms)
    "closed": dict(open_economy=False, r=0.1, exported=[0.0, 0.0],
                   f1=dict(revenue=6000.0, investment=0.0, profit=-16880.0, reward=-16880.0),
                   corp_tax=0.0, lump=2860.0),
}


@pytest.mark.parametrize("name", ["open", "closed"])
def test_hand_computed_step(name: str) -> None:
    case = CASES[name]
    params, state, actions = tiny_economy(case["open_economy"], case["r"])
    nxt, res = step(params, state, actions)
    r, lump, f1 = case["r"], case["lump"], case["f1"]
    firm_reward = [F0["reward"], f1["reward"]]

    def close(actual: torch.Tensor, expected, what: str) -> None:
        exp = torch.as_tensor(expected, dtype=torch.float64)
        assert torch.allclose(actual, exp, rtol=1e-9, atol=1e-9), f"{what}: {actual.tolist()} != {exp.tolist()}"

    for e in (0, 1):
        acc = res.accounts
        close(acc.consumed[e], CONSUMED, "consumed")
        close(acc.consumer_spending[e], SPENDING, "spending")
        close(acc.hours[e], HOURS, "hours")
        close(acc.labour[e], LABOUR, "labour")
        close(acc.labour_income[e], INCOME, "labour income")
        close(acc.units_sold[e], SOLD, "units sold")
        close(acc.exported[e], case["exported"], "exported")
        close(acc.produced[e], PRODUCED, "produced")
        close(acc.firm_revenue[e], [F0["revenue"], f1["revenue"]], "revenue")
        close(acc.wage_bill[e], WAGE_BILL, "wage bill")
        close(acc.investment[e], [F0["investment"], f1["investment"]], "investment")
        close(acc.profit[e], [F0["profit"], f1["profit"]], "profit")
        close(acc.income_tax[e], sum(INCOME_TAX), "income tax")                 # 5720
        close(acc.corporate_tax[e], case["corp_tax"], "corporate tax")
        close(acc.taxes[e], sum(INCOME_TAX) + case["corp_tax"], "taxes")
        close(acc.lump_sum[e], (sum(INCOME_TAX) + case["corp_tax"]) / 2, "lump sum")
        assert math.isclose(lump, (sum(INCOME_TAX) + case["corp_tax"]) / 2)  # the comment's number

        # rewards (Consumers, Firms, Government: 'total' welfare = utilities + 0.0025 firm rewards)
        close(res.rewards.consumer[e], CONSUMER_REWARD, "consumer reward")
        close(res.rewards.firm[e], firm_reward, "firm reward")
        close(res.rewards.government[e], sum(CONSUMER_REWARD) + 0.0025 * sum(firm_reward), "welfare")

        # next state (order 6, 9, 10): B_j += 0.01 - spending + (1 - tau) w h + lump sum, then interest
        cb = [2000 + 0.01 - 1600 + (1 - 0.2) * 5720 + lump, 10000 + 0.01 - 7400 + (1 - 0.2) * 22880 + lump]
        cb = [b * (1 + r) if b > 0 else b for b in cb]
        fb = [44000 + F0["reward"], 1000 + f1["reward"]]   # open: 41280, 18884.8; closed: 41280, -15880
        fb = [b * (1 + r) if b > 0 else b for b in fb]
        if name == "closed":
            assert fb[1] == -15880.0  # no interest on a negative budget
        stock = [3 - 3 - 0 + PRODUCED[0], 120 - 12 - case["exported"][1] + PRODUCED[1]]
        close(nxt.consumer_budget[e], cb, "consumer budget")
        close(nxt.firm_budget[e], fb, "firm budget")
        close(nxt.stock[e], stock, "stock")
        close(nxt.capital[e], [5000 + 0.0, 10000 + f1["investment"]], "capital")
        close(nxt.overdemanded[e], [1.0, 0.0], "overdemanded")
        close(nxt.price[e], [2000.0, 0.0], "price")
        close(nxt.wage[e], [11.0, 33.0], "wage")
        close(nxt.income_tax[e], 0.6, "income tax rate")
        close(nxt.corporate_tax[e], 0.0, "corporate tax rate")
        close(nxt.log_tfp[e], 0.0, "log tfp")

        # Order 7: t += 1; the episode (T = 10) ends with env 0's step
        t_next = [10.0, 4.0][e]
        close(nxt.t[e], t_next, "t")
        assert bool(res.done[e]) == (e == 0)

        # Observations (global part shared): prices/2500, wages/44, stock digits, flags, taxes, t/T
        glob = [2000 / 2500, 0 / 2500, 11 / 44, 33 / 44] + digits(stock[0]) + digits(stock[1]) \
            + [1.0, 0.0, 0.6, 0.0, t_next / T]
        consumer_obs = [glob + digits(cb[0]) + [THETA[0] / 0.01], glob + digits(cb[1]) + [THETA[1] / 0.01]]
        firm_obs = [glob + digits(fb[0]) + [5000 / 10000, ALPHA[0], 1.0, 0.0],
                    glob + digits(fb[1]) + [(10000 + f1["investment"]) / 10000, ALPHA[1], 0.0, 1.0]]
        close(res.obs.full("consumer")[e], consumer_obs, "consumer obs")
        close(res.obs.full("firm")[e], firm_obs, "firm obs")
        close(res.obs.full("government")[e], [glob], "government obs")


def test_hand_step_numbers_spelled_out() -> None:
    """A few of the hand numbers as literals, so the expressions above cannot drift together."""
    assert SPENDING == [1600.0, 7400.0]
    assert INCOME == [5720.0, 22880.0]
    assert math.isclose(PRODUCED[0], 31.796, rel_tol=1e-4)  # 0.01 * 910.282 * 3.49302
    assert math.isclose(PRODUCED[1], 50.712, rel_tol=1e-4)  # 0.01 * 630.957 * 8.03730
    assert math.isclose(CONSUMER_REWARD[0], 0.58504 + 1.87542 - 2.6, abs_tol=1e-4)  # u(0.6) + u(2) - 0.005 * 520
