"""How a model is trained, fine-tuned and evaluated: the training setup (the user's
loss, optimizer and metrics), losses, distillation, recovery defaults, determinism,
tf.distribute, and `kprune train`'s job."""
