"""Order of the examples in the gallery, and a per-example reset (sphinx-gallery hooks)."""

# Examples in reading order; any example not listed comes after these, by name.
ORDER = [
    "plot_noise_level_selection.py",
    "plot_layer_sigma_search.py",
    "plot_pipeline_probe.py",
    "plot_compare_shrinkage.py",
    "plot_baselines_across_sigma.py",
    "plot_training_monitor.py",
    "diffusers_checkpoint.py",
]


class ExampleOrder:
    """Sort key for ``within_subsection_order``: position in ``ORDER``, then name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        position = ORDER.index(filename) if filename in ORDER else len(ORDER)
        return (position, filename)

    def __repr__(self):
        # sphinx-gallery compares configurations by repr to decide what to rerun
        return f"<ExampleOrder {ORDER}>"


def reset_torch(gallery_conf, fname):
    """Give every example the same torch state: one thread, default seed."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
