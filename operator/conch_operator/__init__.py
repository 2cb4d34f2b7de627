"""The Conch operator: reconciles `Model` resources into Triton workloads and publishes their status."""
