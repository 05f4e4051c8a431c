"""Epsilon of DP-SGD on MNIST, the noise for a target epsilon, and a ledger that survives a restart.

Run: python examples/accounting.py
"""

from privlab.accounting import PrivacyLedger, calibrate_noise, epsilon

N, BATCH, EPOCHS, DELTA = 60_000, 256, 60, 1e-5
q = BATCH / N
steps = EPOCHS * N // BATCH

for acc in ("pld", "rdp"):
    print(f"{acc}: sigma 1.1, {EPOCHS} epochs -> epsilon {epsilon(1.1, q, steps, DELTA, acc):.3f}")

sigma = calibrate_noise(target_epsilon=3.0, sample_rate=q, steps=steps, delta=DELTA)
print(f"noise multiplier for epsilon 3: {sigma:.4f}")

ledger = PrivacyLedger(delta=DELTA)
ledger.record(sigma, q, steps=steps // 2)  # first half of training
text = ledger.to_json()  # ... saved with a checkpoint, process restarts ...
resumed = PrivacyLedger.from_json(text)
resumed.record(sigma, q, steps=steps - steps // 2)
print(f"after resuming: {resumed.steps} steps, epsilon {resumed.epsilon():.3f}")
