"""ViSA (arXiv 2502.19917): visual-centric selection of LLaVA-format instruction data.

Rows hold ``image`` and ``conversations: [{from, value}, ...]``. Five agents, each a ``ds.map``
scorer following :mod:`hf_vlm_filter.scorers.base` (NaN + reason for a bad row, every row kept,
streaming-safe through ``map_with_scorer``), write one column each, named as in the paper:

=====================  =========================================  ==================================
column                 agent                                      module
=====================  =========================================  ==================================
``sc_score``           segmentation complexity (SAM mask count)   :mod:`.segmentation`
``oa_score``           object alignment (Grounding DINO TF-IDF)   :mod:`.object_alignment` (2 passes)
``dp_score``           information richness (VLM rating 1-5)      :mod:`.richness`
``pt_score``           answer difficulty (first-10-token NLL)     :mod:`.instruction_quality`
``im_score``           image-answer mutual information            :mod:`.instruction_quality`
=====================  =========================================  ==================================

Error columns are ``sc_error``, ``oa_objects_error`` / ``oa_error``, ``dp_error`` and ``pt_error``
(shared by ``pt_score`` and ``im_score``). :func:`visa_select` combines the columns with Shapley
weights over the agents (:mod:`.shapley`) into ``visa_score`` and keeps a top fraction or the rows
above a threshold; ``hf-vlm-filter visa-select`` does the same from the command line.
"""

from .instruction_quality import InstructionQuality, InstructionQualityConfig, instruction_quality_scores
from .object_alignment import (
    DocumentFrequencies,
    ObjectAlignmentConfig,
    ObjectAlignmentScore,
    ObjectTagCounter,
    default_tags,
    oa_counts,
    oa_document_frequencies,
)
from .richness import InformationRichness, RichnessConfig, dp_scores
from .segmentation import SegmentationComplexity, SegmentationConfig, sc_scores
from .selection import AGENT_COLUMNS, VisaSelection, add_visa_score, visa_select
from .shapley import AgentWeights, fit_agent_weights, shapley_values

__all__ = [
    "AGENT_COLUMNS",
    "AgentWeights",
    "DocumentFrequencies",
    "InformationRichness",
    "InstructionQuality",
    "InstructionQualityConfig",
    "ObjectAlignmentConfig",
    "ObjectAlignmentScore",
    "ObjectTagCounter",
    "RichnessConfig",
    "SegmentationComplexity",
    "SegmentationConfig",
    "VisaSelection",
    "add_visa_score",
    "default_tags",
    "dp_scores",
    "fit_agent_weights",
    "instruction_quality_scores",
    "oa_counts",
    "oa_document_frequencies",
    "sc_scores",
    "shapley_values",
    "visa_select",
]
