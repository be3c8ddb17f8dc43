"""Judge training: graded image-text data (levels 0-3 and the 1-10 rubric) and fine-tuning.

Modules:
    levels     the one mapping between UniFilter's levels 0-3 and the compact judge's 1-10 rubric,
               and the features of a graded dataset.
"""
