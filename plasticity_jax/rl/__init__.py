"""Reinforcement learning in the engine: PPO on the environments of `plasticity_jax.envs` (`rl.ppo`)."""

from plasticity_jax.rl.ppo import gae, make_train, ppo_loss_terms

__all__ = ['gae', 'make_train', 'ppo_loss_terms']
