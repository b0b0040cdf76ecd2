"""Calibrated Q-Learning, Cal-QL (Nakamoto et al., "Cal-QL: Calibrated Offline RL Pre-Training for
Efficient Online Fine-Tuning", 2023).

CQL (rlrun.algos.cql) whose conservative penalty pushes down the policy's Q-values only to the
value of the data's own policy: per critic i,
  α_cql · clip(E_s[T log Σ_a exp(max(Q_i(s, a), V^μ(s))/T) / density(a)] − E_(s,a)~D[Q_i(s, a)])
where the max applies to the actions of π(·|s) and π(·|s') (not to the uniform ones), and V^μ(s) is
the discounted Monte-Carlo return from s to the end of its episode in the dataset (Batch.mc_return,
computed per episode when the dataset loads; rlrun.data.offline.mc_returns). A truncated episode's
return stops at its last step (the paper's and CORL's choice). Online transitions carry no return,
so mixed fine-tuning batches are learned from as by CQL (as CORL's `switch_calibration` does);
`cql_alpha_online` sets the penalty's weight from the switch.
"""

from __future__ import annotations

from rlrun.algos.cql import CQL
from rlrun.algos.sac import SAC


class CalQL(SAC):
    """CQL's methods with the calibration on; shared by assignment, so the class stays one level below SAC."""

    uses_mc_returns = True
    __init__ = CQL.__init__
    target_value = CQL.target_value
    critic_loss = CQL.critic_loss
    actor_loss = CQL.actor_loss
    auxiliary_steps = CQL.auxiliary_steps
    update = CQL.update
    begin_online = CQL.begin_online
