"""tcmoa: Task-Customized Mixture of Adapters (TC-MoA, CVPR 2024) for general image fusion."""
