"""Class-incremental CIFAR-100 (Dohare et al., "Loss of plasticity in deep continual learning", Nature 2024, Fig. 2).

Training starts with 5 classes and adds 5 every 200 epochs up to all 100 (20 tasks; task t trains on the first 5(t + 1)
classes of a per-seed class order). Of the 500 images of each class in CIFAR-100's training split the first 50 are the
validation images and the other 450 the training images, as in the papers' code; the test accuracy after each task is
measured on the 100 test images of every class seen so far. The network has 100 outputs; the classes not seen yet are
hidden from the loss and the predictions. Network: the papers' modified ResNet-18 (`models.ResNet18`: 3x3 stride-1 first
convolution, no max-pool, batch normalisation). SGD with step size 0.1, momentum 0.9, weight decay 5e-4 (the `l2`
learner: coupled into the gradient as PyTorch's SGD), batch size 90, step size x0.2 at epochs 60, 120 and 160 of each
task (`learner.step_size_milestones` = (0.3, 0.6, 0.8) of the task); on-device augmentation of training images:
normalisation, random horizontal flip, random crop with reflect-padding 4, random rotation of 0-15 degrees
(`problems.augment`, which documents the source of each detail).

The `scratch` variant trains a freshly initialised network at every task (`reset_at_task_start='network'`): the
papers' comparison of a network retrained from scratch on the same classes. Learners, with the same SGD, momentum,
weight decay and schedule (the papers' lop/incremental_cifar/cfg/*.json):

- `cbp`: continual backprop, replacement rate 1e-5, maturity threshold 1000, utility 'contribution', decay 0.99, on
  the channels of every block's first convolution with its batch norm (`models.ResNet18.unit_layers`, which says why
  the papers' code's other layers are not replaced here);
- `redo`: ReDo on the same channels (recycle period 1000 updates, dormancy threshold 0.1: the learner's defaults;
  the papers have no ReDo run on this problem);
- `shrink_perturb`: noise standard deviation 1e-5 after each step (weight decay 5e-4 as the base system).

    python -m plasticity_jax.main --config=configs/incremental_cifar100.py --workdir=runs/cifar100
    python -m plasticity_jax.main --config=configs/incremental_cifar100.py:scratch --workdir=runs/cifar100_scratch
    python -m plasticity_jax.main --config=configs/incremental_cifar100.py:cbp --workdir=runs/cifar100_cbp

Early stopping (`problem.early_stopping`, on by default as `early_stopping: true` in every config the papers' code
ships): after every epoch the network is scored on the validation images of the classes seen so far (50 per class,
never augmented, `problem.validation_per_class`), inside the compiled program; the network (weights and batch-norm
statistics) of the task's best validation accuracy (the first epoch reaching it) is the one scored on the test
images and carried into the next task. As in the papers' lop/incremental_cifar/incremental_cifar_experiment.py
(`extend_classes` loads the best state dict at the task's end), the optimizer's momentum and the learner's state
(continual backprop's utilities and ages) go on from the task's last step. Metrics: `validation_accuracy` (the
task's best) and `validation_epoch` (its epoch, from 0); `test_accuracy` is the selected network's.
`--config.problem.early_stopping=False` carries and scores the last network instead (the validation split is still
scored); `--config.problem.validation_per_class=0` also drops the split (then the 450 training images are the first
of each class).

Choices: the papers' code evaluates on augmented test images (here they are not augmented), and its plotting script
(lop/incremental_cifar/plots/plot_incremental_cifar_results.py) reports for each task the MAXIMUM over the task's 200
epochs of the per-epoch test accuracy, not the test accuracy of the best-validation network that it carries on; here
`test_accuracy` is the carried network's (the per-epoch test accuracy is not scored).

Expected (Nature 2024, Fig. 2b): the incrementally trained network's test accuracy falls behind the network retrained
from scratch as classes are added (by task 20 it is several points lower); continual backprop is the best learner,
above the retrained network, and keeps the share of dormant units near zero where the base system's grows past
half; Shrink and Perturb is between them. Runtime: about 1M steps of ResNet-18 per
seed: an accelerator job; CIFAR-100 loads from TFDS (needs TensorFlow and the dataset prepared in
`--config.data_dir`). On the development machine it has only run on generated data of CIFAR-100's shapes.
"""

from plasticity_jax import config as config_lib

# The papers' lop/incremental_cifar/cfg/continual_backpropagation.json and shrink_and_perturb.json.
CBP = {'replacement_rate': 1e-5, 'maturity_threshold': 1000, 'utility': 'contribution', 'decay_rate': 0.99}
SHRINK_PERTURB = {'noise_std': 1e-5}


def get_config(arg=None):
    config = config_lib.base_config()
    config.num_seeds = 5
    config.num_tasks = 20
    config.tasks_per_chunk = 1
    config.problem = config_lib.dataset_tasks_problem(dataset='cifar100', schedule='class_increments', epochs=200,
                                                      batch_size=90, classes_per_increment=5, train_per_class=450,
                                                      augment=True)
    config.problem.validation_per_class = 50
    config.problem.early_stopping = True
    config.model = config_lib.image_model_config('resnet18', base_width=64)
    config.learner.name = 'l2'
    config.learner.weight_decay = 5e-4
    config.learner.step_size = 0.1
    config.learner.momentum = 0.9
    config.learner.step_size_milestones = (0.3, 0.6, 0.8)
    config.learner.step_size_decay = 0.2
    config.metrics.probe_size = 500

    weight_decay = {'weight_decay': config.learner.weight_decay}  # kept by every learner
    variants = {'scratch': lambda c: setattr(c, 'reset_at_task_start', 'network'),
                'cbp': config_lib.learner_with('cbp', {**CBP, **weight_decay}),
                'redo': config_lib.learner_with('redo', weight_decay),
                'shrink_perturb': config_lib.learner_with('shrink_perturb', {**SHRINK_PERTURB, **weight_decay})}
    return config_lib.apply_variants(config, arg, variants)
