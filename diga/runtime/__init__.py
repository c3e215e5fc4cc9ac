"""What training and inference share: the device, precision, several processes, model checkpoints, the datasets
and batches a stage reads, and evaluation on target val. train/ and infer/ both build on it and never on each
other."""
