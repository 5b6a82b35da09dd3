"""Training and finetuning: the loop, losses, checkpoints that resume, logs and curves."""
