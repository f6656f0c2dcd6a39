"""Variables the frame lacks: multilevel regression and synthetic poststratification.

A model may use a survey variable that the census frame does not have (education).
Poststratifying it needs each frame cell's split by that variable. Following
Leemann and Wasserfallen (2017, "Extending the use and prediction precision of
subnational public opinion estimation") and the two-stage approach of Kastellec,
Lax, Malecki and Phillips (2015), the split is estimated from the survey: a
multilevel categorical model of the variable on the frame variables the outcome
model uses (:func:`fit_frameless`), whose posterior draw ``s`` gives every frame
cell's shares ``pi[c, e]``; :func:`~opinionmap.poststratification.poststratify` then
weighs cell ``c`` at level ``e`` by ``N_c pi[c, e]`` with the outcome model's draw
``s``, so the split's uncertainty is carried into the estimates. The maths is in
``docs/model.md`` ("Variables the frame lacks").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from opinionmap.design import Design
from opinionmap.errors import FrameError, format_values
from opinionmap.spec import ModelSpec, Sampling

if TYPE_CHECKING:
    from opinionmap.results import FitResult, Fitted

__all__ = ["FramelessModel", "fit_frameless", "frameless_spec", "frameless_variable"]


@dataclass(frozen=True)
class FramelessModel:
    """The fitted model of a survey variable the frame lacks.

    Attributes
    ----------
    variable
        The variable (a categorical predictor of the outcome model).
    result
        Its fit: a categorical model of ``variable`` on the frame variables.
    """

    variable: str
    result: FitResult

    @property
    def design(self) -> Design:
        """The fitted model's design (its coding of the frame variables)."""
        return self.result.design

    @property
    def levels(self) -> tuple[str, ...]:
        """The variable's levels, as the model of the variable orders them."""
        return self.result.design.categories

    @property
    def method(self) -> str:
        """How the frame was extended, in words (the estimates' ``method``)."""
        return (
            f"MrsP: the frame lacks {self.variable!r}; its distribution within each frame cell "
            f"is estimated from the survey by a multilevel categorical model "
            f"({self.result.spec.formula}), draw by draw"
        )


def frameless_variable(design: Design, columns: list[str]) -> str | None:
    """The categorical predictor a frame with ``columns`` lacks, when that is all it lacks.

    Area covariates the fit joins onto a frame itself do not count as lacking. ``None``
    when the frame has every predictor, or lacks a numeric one or several (which
    :func:`~opinionmap.poststratification.poststratify` then names).
    """
    covariates = design.spec.covariates
    joined = (
        set(covariates.columns)
        if covariates is not None and design.covariates is not None
        else set()
    )
    lacking = [v for v in design.spec.variables if v not in columns and v not in joined]
    categorical = {c.name for c in design.codings if c.kind == "categorical"}
    return lacking[0] if len(lacking) == 1 and lacking[0] in categorical else None


def frameless_spec(design: Design, variable: str, sampling: Sampling | None = None) -> ModelSpec:
    """The model of ``variable``: the outcome model's terms that do not involve it.

    Fixed effects as they are, every grouping term as a varying intercept; a
    categorical family over the variable's levels.
    """
    spec = design.spec
    coding = design.coding(variable)
    if coding.kind != "categorical":
        raise FrameError(
            f"frame: the model uses {variable!r}, which the frame lacks; opinionmap estimates a "
            "frame-less variable's distribution within the frame's cells for a categorical "
            f"variable only, and {variable!r} is numeric. Add it to the frame (e.g. its mean "
            "in each cell) or drop it from the formula."
        )
    fixed = [t for t in spec.fixed_terms if variable not in t.variables]
    groups = [g for g in spec.group_terms if variable not in g.factors]
    terms = [t.name for t in fixed] + [f"(1 | {g.name})" for g in groups]
    formula = f"{variable} ~ 1" + "".join(f" + {t}" for t in terms)
    return ModelSpec(
        formula=formula,
        family="categorical",
        levels=coding.levels,
        name=f"{spec.outcome}: {variable}",
        sampling=sampling or Sampling(),
    )


def respondents(design: Design) -> pd.DataFrame:
    """One row per respondent of a fit with the values of its predictors (from its cells)."""
    return design.cells.iloc[design.respondent_cell].reset_index(drop=True)


def fit_frameless(
    result: Fitted,
    variable: str,
    *,
    data: pd.DataFrame | None = None,
    random_seed: int = 0,
    sampling: Sampling | None = None,
) -> FramelessModel:
    """Fit the model of a variable the frame lacks, on the fit's respondents.

    Parameters
    ----------
    result
        The outcome model's fit.
    variable
        The frame-less predictor (categorical).
    data
        Respondents to fit it on (default: the outcome model's own, from its cells);
        a survey's every respondent, when the outcome model dropped some, informs
        the split better.
    random_seed
        Seed of its fit.
    sampling
        Sampler settings laid over the outcome fit's chains, draws and tuning steps
        (the same chains and draws pair its draws one to one with the outcome model's).

    Examples
    --------
    >>> frameless = fit_frameless(result, "education")  # doctest: +SKIP
    >>> est = om.poststratify(result, frame, by="region", frameless=frameless)  # doctest: +SKIP
    """
    from opinionmap.fitting import fit

    design = result.design
    sizes = result.posterior.sizes
    tune = getattr(getattr(result, "sampling", None), "tune", None)
    own = Sampling(chains=int(sizes["chain"]), draws=int(sizes["draw"]), tune=tune)
    spec = frameless_spec(design, variable, own.merged(sampling))
    # a survey given anew lacks the area covariates the fit joined on
    rows = respondents(design) if data is None else design.with_covariates(data, "data")
    fitted = fit(spec, rows, random_seed=random_seed, progress=False)
    return FramelessModel(variable, fitted)


def check_frame_cells(
    frameless: FramelessModel, frame_rows: pd.DataFrame, new_labels: dict[str, Any]
) -> None:
    """Frame cells whose levels the variable's model never saw, named (unless sampled)."""
    design = frameless.design
    for coding in design.codings:
        if coding.kind != "categorical" or coding.name not in frame_rows:
            continue
        if any(coding.name in g.factors for g in design.groups if g.name in new_labels):
            continue
        seen = set(coding.levels)
        values = frame_rows[coding.name].astype(str)
        unseen = sorted(set(values) - seen)
        if unseen:
            cells = frame_rows.loc[values.isin(unseen)].astype(str).drop_duplicates().head(5)
            named = [", ".join(f"{c}={r[c]}" for c in cells.columns) for _, r in cells.iterrows()]
            raise FrameError(
                f"frame: cannot estimate how {frameless.variable!r} splits frame cells with "
                f"{coding.name} level(s) {format_values(unseen)}: no survey respondent has them "
                f"(cells: {format_values(named)}). Recode them to levels the survey has "
                f"({format_values(coding.levels)}), or add {frameless.variable!r} to the frame."
            )


def pair_draws(n_samples: int, frameless_samples: int) -> np.ndarray:
    """Which draw of the variable's model goes with each outcome-model draw (cycled)."""
    return np.arange(n_samples) % frameless_samples
