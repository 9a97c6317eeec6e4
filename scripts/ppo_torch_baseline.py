"""The baseline of `scripts/benchmark_ppo.py`: a plain PyTorch PPO loop on gymnasium's MuJoCo Ant, one environment,
the way the papers' code runs (Dohare et al., Nature 2024, Methods: one environment per run on the CPU simulator).

The same networks and update as `plasticity_jax.rl.ppo` with the papers' settings (`plasticity_jax/rl/config.py`):
policy and value MLPs of 2 x 256 ReLU units, LeCun-uniform kernels, zero biases, a state-independent log-std
initialised to 0, no tanh; each update collects 2048 steps of one environment, computes GAE (gamma 0.99, lambda
0.95, the time-limit end terminal) and normalised advantages, then runs 10 epochs x 16 minibatches of 128 of the
clipped surrogate (0.2) + value MSE under one Adam (1e-4, eps 1e-8). Written plainly for timing: numpy buffers,
a Python loop over steps and minibatches, no vectorised environments.

The environment is gymnasium's `Ant-v4` on the `mujoco` bindings (C MuJoCo, float64; `pip install -e .[bench]`),
Ant-v3's model and reward; its 27 observations are padded with 84 zeros to Ant-v3's 111 (the papers' mujoco-py
>= 2 observed zero contact forces; `envs/ant.py` pads the same way), so the first layer has the papers' fan-in.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

OBSERVATION_SIZE = 111  # Ant-v3's observation: 27 entries + 84 (zero) contact forces


def lecun_uniform_mlp(torch, sizes: list[int]):
    """Linear layers with ReLU between them; kernels U(+-sqrt(3 / fan_in)), biases 0."""
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = torch.nn.Linear(fan_in, fan_out)
        bound = math.sqrt(3.0 / fan_in)
        torch.nn.init.uniform_(linear.weight, -bound, bound)
        torch.nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


class TorchPPO:
    """One PPO run: the environment, the two networks, Adam, and `update()` = collect + learn."""

    def __init__(self, *, seed: int = 0, width: int = 256, steps_per_update: int = 2048, epochs: int = 10,
                 minibatch_size: int = 128, step_size: float = 1e-4, gamma: float = 0.99, gae_lambda: float = 0.95,
                 clip: float = 0.2, max_episode_steps: int = 1000, threads: int = 1):
        import gymnasium
        import torch

        self.torch = torch
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        with warnings.catch_warnings():  # Ant-v4 is Ant-v3 on the maintained bindings; gymnasium points to v5
            warnings.simplefilter('ignore', DeprecationWarning)
            self.env = gymnasium.make('Ant-v4', max_episode_steps=max_episode_steps, disable_env_checker=True)
        action_size = self.env.action_space.shape[0]
        self.policy = lecun_uniform_mlp(torch, [OBSERVATION_SIZE, width, width, action_size])
        self.value = lecun_uniform_mlp(torch, [OBSERVATION_SIZE, width, width, 1])
        self.log_std = torch.nn.Parameter(torch.zeros(action_size))
        parameters = [*self.policy.parameters(), *self.value.parameters(), self.log_std]
        self.optimizer = torch.optim.Adam(parameters, lr=step_size, betas=(0.9, 0.999), eps=1e-8)
        self.steps_per_update, self.epochs, self.minibatch_size = steps_per_update, epochs, minibatch_size
        self.gamma, self.gae_lambda, self.clip = gamma, gae_lambda, clip
        self.observation = self._padded(self.env.reset(seed=seed)[0])
        self.episode_return, self.finished_returns = 0.0, []

    @staticmethod
    def _padded(observation):
        padded = np.zeros(OBSERVATION_SIZE, np.float32)
        padded[:observation.shape[0]] = observation
        return padded

    def _log_prob(self, mean, action):
        std = self.log_std.exp()
        return (-0.5 * ((action - mean) / std) ** 2 - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def collect(self):
        """`steps_per_update` steps of the one environment; returns the numpy buffers."""
        torch, n = self.torch, self.steps_per_update
        observations = np.zeros((n, OBSERVATION_SIZE), np.float32)
        actions = np.zeros((n, self.env.action_space.shape[0]), np.float32)
        log_probs, values, rewards = (np.zeros(n, np.float32) for _ in range(3))
        ends = np.zeros(n, bool)
        for t in range(n):
            with torch.no_grad():
                observation = torch.from_numpy(self.observation)
                mean = self.policy(observation)
                action = mean + self.log_std.exp() * torch.randn_like(mean)
                log_probs[t] = self._log_prob(mean, action).item()
                values[t] = self.value(observation).item()
            observations[t], actions[t] = self.observation, action.numpy()
            next_observation, reward, terminated, truncated, _ = self.env.step(actions[t])
            rewards[t], ends[t] = reward, terminated or truncated  # the time-limit end is terminal (the papers)
            self.episode_return += reward
            if ends[t]:
                self.finished_returns.append(self.episode_return)
                self.episode_return = 0.0
                next_observation, _ = self.env.reset()
            self.observation = self._padded(next_observation)
        with torch.no_grad():
            last_value = self.value(torch.from_numpy(self.observation)).item()
        return observations, actions, log_probs, values, rewards, ends, last_value

    def learn(self, observations, actions, log_probs, values, rewards, ends, last_value):
        """GAE, normalised advantages, then epochs x minibatches of Adam steps on the PPO loss."""
        torch, n = self.torch, self.steps_per_update
        advantages = np.zeros(n, np.float32)
        following_advantage, following_value = 0.0, last_value
        for t in reversed(range(n)):
            if ends[t]:
                following_advantage, following_value = 0.0, 0.0
            delta = rewards[t] + self.gamma * following_value - values[t]
            following_advantage = delta + self.gamma * self.gae_lambda * following_advantage
            advantages[t], following_value = following_advantage, values[t]
        targets = torch.from_numpy(advantages + values)
        advantages = torch.from_numpy(advantages)
        advantages = (advantages - advantages.mean()) / advantages.std()
        observations, actions = torch.from_numpy(observations), torch.from_numpy(actions)
        old_log_probs = torch.from_numpy(log_probs)
        for _ in range(self.epochs):
            order = torch.randperm(n)
            for start in range(0, n, self.minibatch_size):
                index = order[start:start + self.minibatch_size]
                ratio = (self._log_prob(self.policy(observations[index]), actions[index]) - old_log_probs[index]).exp()
                clipped = ratio.clamp(1.0 - self.clip, 1.0 + self.clip)
                policy_loss = -torch.min(ratio * advantages[index], clipped * advantages[index]).mean()
                value_loss = ((self.value(observations[index]).squeeze(-1) - targets[index]) ** 2).mean()
                self.optimizer.zero_grad()
                (policy_loss + value_loss).backward()
                self.optimizer.step()

    def update(self):
        self.learn(*self.collect())
