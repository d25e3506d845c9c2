"""The recipe schema. Every field is typed and range-checked; unknown keys are rejected.

A recipe names a model and the pipeline stages to run on it. Stages always run in pipeline order
(teacher -> pretrain -> ...); a recipe includes only the stages it needs. Each stage's output folder
is the next stage's input.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pruneofa.quant.config import QATConfig

RECIPE_VERSION = 1

Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class StrictModel(BaseModel):
    """Rejects unknown keys (a typo must fail, not be silently ignored) and re-validates assignments."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TargetsConfig(StrictModel):
    """Which weights are pruned. Names are matched with regular expressions (full match)."""

    types: list[Literal["Linear", "Conv1D"]] = Field(
        default_factory=lambda: ["Linear"], description="module types whose weight is pruned"
    )
    scope: Literal["encoder", "all"] = Field(
        "encoder",
        description="'encoder': only modules inside the backbone (task and MLM heads excluded); 'all': anywhere",
    )
    include: list[str] = Field(
        default_factory=list, description="regexes on module names; empty = every module of the scope"
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="regexes on module names to leave dense (embeddings are nn.Embedding: never targets)",
    )


class SparsityConfig(StrictModel):
    """How a stage's masks are shaped and shared out between layers."""

    pattern: Literal["unstructured", "block1x4"] = Field(
        "unstructured", description="'unstructured' (the paper's) or 1x4 blocks along the input dimension"
    )
    allocation: Literal["uniform", "global"] = Field(
        "uniform", description="'uniform': every layer at the target (the paper's); 'global': one threshold"
    )
    targets: TargetsConfig = Field(default_factory=TargetsConfig)


class PruneStage(StrictModel):
    """One-shot magnitude pruning, no training."""

    sparsity: Fraction = 0.9
    masks: SparsityConfig = Field(default_factory=SparsityConfig)


class GMPConfig(StrictModel):
    """Gradual Magnitude Pruning (Zhu & Gupta 2017): cubic ramp from initial to final sparsity."""

    initial_sparsity: Fraction = 0.0
    final_sparsity: Fraction = 0.9
    begin_step: NonNegativeInt = 0
    end_step: PositiveInt = 100
    frequency: PositiveInt = 10

    @model_validator(mode="after")
    def _check_steps(self) -> GMPConfig:
        if self.begin_step >= self.end_step:
            raise ValueError(f"begin_step ({self.begin_step}) must be < end_step ({self.end_step})")
        if (self.end_step - self.begin_step) % self.frequency:
            raise ValueError(
                f"end_step - begin_step ({self.end_step - self.begin_step}) must be a multiple of "
                f"frequency ({self.frequency}) so that the last update lands on end_step"
            )
        if self.initial_sparsity > self.final_sparsity:
            raise ValueError(
                f"initial_sparsity ({self.initial_sparsity}) must be <= final_sparsity ({self.final_sparsity})"
            )
        return self


class LRConfig(StrictModel):
    """Warm-up, then decay; with `rewind`, learning-rate rewinding at every mask update (LRR)."""

    peak: Annotated[float, Field(gt=0.0)] = 5e-5
    warmup_steps: NonNegativeInt = 0
    decay: Literal["linear", "cosine", "constant"] = "linear"
    rewind: bool = True
    rewind_style: Literal["reference", "sawtooth"] = Field(
        "reference",
        description="reference: the paper code's linear rewinding (each pruning interval replays the first "
        "`frequency` steps of one decay, then a decay to 0 after the last update); sawtooth: back to peak at "
        "every update, then a full decay before the next",
    )
    final_ratio: Fraction = Field(0.0, description="LR at the end of a decay, as a fraction of peak")


class OptimConfig(StrictModel):
    name: Literal["adamw", "sgd"] = "adamw"
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.01
    betas: tuple[Annotated[float, Field(ge=0.0, lt=1.0)], Annotated[float, Field(ge=0.0, lt=1.0)]] = (0.9, 0.999)
    eps: Annotated[float, Field(gt=0.0)] = 1e-8
    momentum: Fraction = Field(0.9, description="SGD only")
    grad_clip: Annotated[float, Field(gt=0.0)] | None = 1.0
    batch_size: PositiveInt = 16
    grad_accum_steps: PositiveInt = 1
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32",
        description="bf16: the forward and backward run under bfloat16 autocast (much faster on CPUs with "
        "AVX512_BF16 or AMX, and on GPUs; slower where bf16 is emulated); weights, masks, gradients and the "
        "optimizer stay fp32. auto: bf16 where the device computes it natively (a CUDA GPU with bf16, a CPU "
        "with AVX512_BF16 or AMX-BF16), else fp32; the run logs which",
    )


class DataConfig(StrictModel):
    """Masked-LM text: 'builtin' (the registry corpus), a file, a folder, a .jsonl or 'hf:NAME'."""

    corpus: str = "builtin"
    block_size: Annotated[int, Field(ge=8, le=4096)] = 128
    mlm_probability: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.15
    whole_word: bool = False
    eval_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.02
    max_train_blocks: PositiveInt | None = None
    max_eval_blocks: PositiveInt | None = 256
    eval_batch_size: PositiveInt = 32
    nsp: bool = Field(
        False,
        description="next-sentence prediction beside masked-LM, as the reference runs trained: examples are "
        "sentence pairs ([CLS] A [SEP] B [SEP], token_type_ids 0 then 1, padded to block_size), B being A's true "
        "continuation or, by a seeded fair coin, text of another document; the model's NSP head "
        "(cls.seq_relationship: BertForPreTraining checkpoints only) is trained, distilled and saved. "
        "max_*_blocks then count pairs",
    )
    short_pair_probability: Fraction = Field(
        0.1, description="with nsp: the share of documents cut into shorter pairs (BERT's short_seq_prob)"
    )


class DistillConfig(StrictModel):
    """Knowledge distillation from the dense teacher, as a weighted sum of terms.

    alpha_kd * T^2 * KL(teacher_T || student_T) on the logits (the paper: at every token;
    `positions: masked` distils at the masked positions only, as DistilBERT's training does, and runs the
    ~30k-vocabulary projection there alone) + alpha_mlm * masked-LM + alpha_hidden * a hidden-state
    loss (`hidden_loss`: mse, TinyBERT-style, or cosine, DistilBERT's; over `hidden_layers`) +
    alpha_attention * KL between the teacher's and the student's attention distributions (every layer,
    TinyBERT/MiniLM-style; runs the eager attention, which is slower). With alpha_kd = alpha_mlm = 0
    (representation distillation alone) no vocabulary projection runs at all.
    """

    alpha_kd: Annotated[float, Field(ge=0.0)] = 0.5
    alpha_mlm: Annotated[float, Field(ge=0.0)] = 0.5
    temperature: Annotated[float, Field(gt=0.0)] = 2.0
    positions: Literal["all", "masked"] = Field("all", description="where the logit KD is computed")
    alpha_hidden: Annotated[float, Field(ge=0.0)] = Field(0.0, description="hidden-state loss weight; 0 = off")
    hidden_loss: Literal["mse", "cosine"] = "mse"
    hidden_layers: Literal["all", "last"] = Field("all", description="all: embeddings and every layer's output")
    alpha_attention: Annotated[float, Field(ge=0.0)] = Field(0.0, description="attention KL weight; 0 = off")
    nsp_kd_weight: Annotated[float, Field(ge=0.0)] = Field(
        1.0,
        description="with data.nsp: the NSP-logit KD's weight beside the MLM-logit KD's 1 (the reference: 1 and 1); "
        "the loss is then alpha_mlm x (MLM + NSP) + alpha_kd x (KD_MLM + nsp_kd_weight x KD_NSP) + the rest",
    )

    @model_validator(mode="after")
    def _check_weights(self) -> DistillConfig:
        if self.alpha_kd + self.alpha_mlm + self.alpha_hidden + self.alpha_attention <= 0:
            raise ValueError("alpha_kd, alpha_mlm, alpha_hidden and alpha_attention are all 0: the loss would be 0")
        return self


class TeacherStage(StrictModel):
    """Teacher preparation: build an MLM head if missing, warm it up, then adapt the whole model."""

    head_warmup_steps: NonNegativeInt = 100
    head_lr: Annotated[float, Field(gt=0.0)] = 1e-3
    steps: NonNegativeInt = 200
    lr: LRConfig = Field(default_factory=lambda: LRConfig(peak=1e-4, warmup_steps=20, rewind=False))
    optim: OptimConfig = Field(default_factory=OptimConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    eval_every: PositiveInt = 100
    checkpoint_every: PositiveInt = 100


class PretrainStage(StrictModel):
    """Sparse pre-training: GMP + learning-rate rewinding + distillation from the dense teacher."""

    steps: PositiveInt = 300
    masks: SparsityConfig = Field(default_factory=SparsityConfig)
    schedule: GMPConfig = Field(default_factory=GMPConfig)
    lr: LRConfig = Field(default_factory=LRConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    eval_every: PositiveInt = 100
    checkpoint_every: PositiveInt = 50

    @model_validator(mode="after")
    def _check_schedule_fits(self) -> PretrainStage:
        if self.schedule.end_step >= self.steps:
            raise ValueError(
                f"schedule.end_step ({self.schedule.end_step}) must be before the last step (steps={self.steps}): "
                "the final mask update needs training steps after it"
            )
        return self


class TaskConfig(StrictModel):
    """A downstream task: a built-in name (polarity, wiki-pairs, wiki-qa, sst2, mnli, qnli, qqp, squad) or
    csv:PATH / jsonl:PATH / hf:NAME[:CONFIG]."""

    name: str = "polarity"
    data_dir: str | None = Field(None, description="folder of the GLUE TSV / SQuAD JSON files (file tasks)")
    max_train: PositiveInt | None = None
    max_eval: PositiveInt | None = None
    max_length: Annotated[int, Field(ge=16, le=4096)] = 128
    doc_stride: Annotated[int, Field(ge=8)] = Field(64, description="QA: overlap of consecutive windows")
    max_query_length: Annotated[int, Field(ge=4)] = 64
    options: dict[str, Any] = Field(default_factory=dict, description="task-specific options (e.g. csv columns)")
    eval_batch_size: PositiveInt = 64


class TaskDistillConfig(StrictModel):
    """Task distillation: alpha_task * CE + alpha_kd * T^2 * KL(teacher_T || student_T) on the task logits."""

    alpha_task: Annotated[float, Field(ge=0.0)] = 0.5
    alpha_kd: Annotated[float, Field(ge=0.0)] = 0.5
    temperature: Annotated[float, Field(gt=0.0)] = 2.0

    @model_validator(mode="after")
    def _check_weights(self) -> TaskDistillConfig:
        if self.alpha_task + self.alpha_kd <= 0:
            raise ValueError("alpha_task and alpha_kd are both 0: the loss would be 0")
        return self


class FinetuneStage(StrictModel):
    """Dense fine-tuning on a task: the dense task teacher that sparse transfer distils from."""

    init: str = Field("teacher", description="a stage of this run ('teacher'), 'model' (the recipe's), or a path")
    task: TaskConfig = Field(default_factory=TaskConfig)
    steps: PositiveInt = 300
    lr: LRConfig = Field(default_factory=lambda: LRConfig(peak=5e-5, warmup_steps=30, rewind=False))
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig(batch_size=32))
    eval_every: PositiveInt = 100
    checkpoint_every: PositiveInt = 100


class TransferStage(FinetuneStage):
    """Sparse transfer: fine-tune the sparse pre-trained model with its pattern locked, distilling from
    the dense task teacher."""

    init: str = Field("pretrain", description="the sparse pre-trained model: a stage of this run or a path")
    teacher: str | None = Field("finetune", description="the dense task teacher (a stage or a path); null: no KD")
    distill: TaskDistillConfig = Field(default_factory=TaskDistillConfig)
    lock: bool = Field(True, description="keep the pre-training mask (false only for the ablation)")
    schedule: GMPConfig | None = Field(
        None,
        description="task-specific pruning (the baseline Prune OFA is measured against): `init` is a dense "
        "model, pruned by GMP on this schedule during the fine-tuning, with `masks` and `lr.rewind`; null: the "
        "pre-training mask is kept",
    )
    masks: SparsityConfig = Field(default_factory=SparsityConfig, description="with `schedule` only")

    @model_validator(mode="after")
    def _check_task_pruning(self) -> TransferStage:
        if self.schedule is None:
            return self
        if not self.lock:
            raise ValueError("schedule (task-specific pruning) and lock: false do not mix; keep lock: true")
        if self.schedule.end_step >= self.steps:
            raise ValueError(f"schedule.end_step ({self.schedule.end_step}) must be before the last step "
                             f"(steps={self.steps}): the final mask update needs training steps after it")
        return self


class QATStage(TransferStage):
    """8-bit quantization-aware training of the sparse fine-tuned model, pattern still locked, with
    distillation from the dense task teacher continuing. Evaluates once, at the end (observers frozen)."""

    init: str = Field("transfer", description="the sparse fine-tuned model: a stage of this run or a path")
    quant: QATConfig = Field(default_factory=QATConfig)
    steps: PositiveInt = 100
    lr: LRConfig = Field(default_factory=lambda: LRConfig(peak=2e-5, warmup_steps=0, rewind=False))


class Recipe(StrictModel):
    """A whole run: which model, which stages. Stages run in the order of STAGE_ORDER."""

    version: int = Field(description=f"recipe format version; this pruneofa reads {RECIPE_VERSION}")
    name: str
    description: str = ""
    seed: int = 42
    model: str = Field(description="a hub id, a local model folder, or a built-in alias ('minilm')")
    continues: str | None = Field(
        None, description="the run this recipe extends: its default output folder is runs/<continues>"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    prune: PruneStage | None = None
    teacher: TeacherStage | None = None
    pretrain: PretrainStage | None = None
    finetune: FinetuneStage | None = None
    transfer: TransferStage | None = None
    qat: QATStage | None = None

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        if self.version != RECIPE_VERSION:
            raise ValueError(
                f"recipe version {self.version} is not supported: this pruneofa reads version {RECIPE_VERSION}"
            )
        if not self.stages():
            raise ValueError(f"the recipe has no stage: add one of {', '.join(STAGE_ORDER)}")
        if self.teacher and self.pretrain and self.pretrain.data.nsp and not self.teacher.data.nsp:
            raise ValueError("pretrain.data.nsp needs a teacher with a trained NSP head: set teacher.data.nsp: true "
                             "too, or pretrain.data.nsp: false")
        return self

    def stages(self) -> list[tuple[str, StrictModel]]:
        """The stages present, in pipeline order."""
        return [(name, getattr(self, name)) for name in STAGE_ORDER if getattr(self, name) is not None]


STAGE_ORDER: tuple[str, ...] = ("prune", "teacher", "pretrain", "finetune", "transfer", "qat")
