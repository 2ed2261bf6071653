"""Networks: the registry of MONAI architectures, affinity targets, and the model file."""
