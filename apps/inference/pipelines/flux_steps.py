"""Continuous batching for FLUX: one denoising step at a time over rows that join and leave.

Rows of one shape (image size, text length, true CFG or not) share each transformer call while
each sits at its own point of its own schedule: the timestep, guidance, prompt and noise are per
row, and the Euler update is `FlowMatchEulerDiscreteScheduler.step`'s arithmetic with a per-row
step size, so a row makes the image its request makes alone (`denoise_batch`'s maths, row-wise).
Text-to-image and image-to-image rows share calls: they differ only in where they start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from apps.common.service.logging import get_logger
from apps.common.wire.inference import InferenceError, InferenceRequest
from apps.inference.engine import BatchItem, ItemOutcome, Retired
from apps.inference.pipelines.flux_denoise import TRUE_CFG_SCALE, decode_images, latent_size
from apps.inference.pipelines.flux_models import Binding
from apps.inference.pipelines.flux_rows import (
    EncodedPrompt,
    GroupShape,
    RowTensors,
    Schedules,
    encode_requests,
    start_rows,
    steps_to_run,
)
from apps.inference.pipelines.preview import LatentPreviewer

log = get_logger(__name__)

# Builds a finished request's outcome from its decoded images (off the engine thread).
ResultMaker = Callable[[BatchItem, list[Any], list[int], float, int], ItemOutcome]
# The start picture of an image-to-image request at the group's size (PIL), or None.
InitImage = Callable[[InferenceRequest, int, int], Any]


@dataclass
class _Member:
    """One request's rows in the group (consecutive rows, one per image)."""

    item: BatchItem
    seeds: list[int]
    total: int
    done: int = 0
    compute_s: float = 0.0
    calls: int = 0
    call_rows: int = 0

    @property
    def rows(self) -> int:
        return len(self.seeds)


class FluxStepGroup:
    """The running rows of one shape. All methods run on the engine thread."""

    def __init__(
        self,
        pipe: Any,
        shape: GroupShape,
        *,
        device: torch.device,
        schedules: Schedules,
        previewer: LatentPreviewer | None,
        make_result: ResultMaker,
        init_image: InitImage,
        step_delay_s: float = 0.0,
        test_oom_above_rows: int | None = None,
        binding: Binding | None = None,
    ) -> None:
        self._pipe = pipe
        # The model and adapter set its rows run on: set on the pipeline before each call.
        self._binding = binding
        self.shape = shape
        self._device = device
        self._schedules = schedules
        self._previewer = previewer
        self._make_result = make_result
        self._init_image = init_image
        self._step_delay_s = step_delay_s
        self._test_oom_above_rows = test_oom_above_rows
        self._members: list[_Member] = []
        self._state: RowTensors | None = None
        self.last_call_s = 0.0
        latent_h, latent_w = latent_size(pipe, shape.width, shape.height)
        self._image_ids = pipe._prepare_latent_image_ids(
            1, latent_h // 2, latent_w // 2, device, pipe.transformer.dtype
        )
        self._text_ids: torch.Tensor | None = None

    @property
    def rows(self) -> int:
        return sum(m.rows for m in self._members)

    # --- joining --------------------------------------------------------------------------------

    @torch.inference_mode()
    def admit(self, items: list[BatchItem]) -> list[Retired]:
        """Encode the prompts of `items` not encoded yet in one call; give each row its noise."""
        started = time.perf_counter()
        refused: list[Retired] = []
        ready: list[tuple[BatchItem, Any]] = []
        for item in items:
            try:
                init = self._init_image(item.request, self.shape.width, self.shape.height)
            except Exception as exc:  # an undecodable start picture fails its request only
                error = InferenceError(
                    code="pipeline_error", message=f"{type(exc).__name__}: {exc}"
                )
                refused.append(Retired(item, _constant(error)))
                continue
            ready.append((item, init))
        if not ready:
            return refused
        members = [
            _Member(item, item.request.image_seeds(), steps_to_run(item.request))
            for item, _ in ready
        ]
        # Prompts the scheduler had encoded while the request waited are not encoded again.
        fresh = [m.item.request for m in members if not isinstance(m.item.encoded, EncodedPrompt)]
        if fresh and self._binding is not None:
            self._binding.activate()  # an adapter may reach the text encoders too
        encoded = iter(
            encode_requests(self._pipe, fresh, self.shape.max_sequence_length, self._device)
            if fresh
            else []
        )
        prompts = [
            m.item.encoded if isinstance(m.item.encoded, EncodedPrompt) else next(encoded)
            for m in members
        ]
        requests = [m.item.request for m in members for _ in m.seeds]  # one per row

        def rows_of(name: str) -> Any:
            tensors = [getattr(p, name) for p in prompts]
            if tensors[0] is None:
                return None
            return torch.cat(
                [t.expand(m.rows, *t.shape[1:]) for t, m in zip(tensors, members, strict=True)]
            )

        embeds, pooled = rows_of("embeds"), rows_of("pooled")
        neg_embeds, neg_pooled = rows_of("neg_embeds"), rows_of("neg_pooled")
        text_ids = prompts[0].text_ids
        parts = [
            start_rows(
                self._pipe,
                self.shape,
                self._schedules,
                member.item.request,
                member.seeds,
                init,
                embeds.dtype,
                self._device,
            )
            for member, (_, init) in zip(members, ready, strict=True)
        ]
        latents = torch.cat([p[0] for p in parts])
        guidance = None
        if self._pipe.transformer.config.guidance_embeds:
            guidance = torch.tensor(
                [r.input.guidance_scale for r in requests], device=self._device, dtype=torch.float32
            )
        joined = RowTensors(
            latents=latents,
            embeds=embeds,
            pooled=pooled,
            neg_embeds=neg_embeds,
            neg_pooled=neg_pooled,
            guidance=guidance,
            sigmas=torch.cat([p[1] for p in parts]),
            timesteps=torch.cat([p[2] for p in parts]),
            position=torch.zeros(latents.shape[0], dtype=torch.long, device=self._device),
        )
        # Only now, with everything made, does the group change: an out-of-memory error above
        # leaves it as it was.
        self._state = joined if self._state is None else RowTensors.cat([self._state, joined])
        self._text_ids = text_ids
        spent = time.perf_counter() - started
        for member in members:
            member.compute_s += spent
        self._members.extend(members)
        return refused

    # --- stepping -------------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> list[Retired]:
        state = self._state
        assert state is not None, "a step of an empty group"
        rows = state.latents.shape[0]
        if self._test_oom_above_rows is not None and rows > self._test_oom_above_rows:
            # FLUXGATE_INFERENCE_TEST_OOM_ABOVE_ROWS: what a GPU raises when a call does not fit.
            raise torch.cuda.OutOfMemoryError(f"test: {rows} rows do not fit")
        started = time.perf_counter()
        if self._binding is not None:
            self._binding.activate()
        try:
            latents, previews = self._advance(state)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()  # the group is unchanged: the caller splits and retries
            raise
        self._state = RowTensors(
            **{**state.__dict__, "latents": latents, "position": state.position + 1}
        )
        if self._step_delay_s:
            time.sleep(self._step_delay_s)
        # Measured on the host: on a GPU the launch queue keeps it about one call behind the
        # device, so over a few calls it is the device's time.
        self.last_call_s = spent = time.perf_counter() - started
        staying: list[_Member] = []
        finished: list[_Member] = []
        left: list[_Member] = []
        for member in self._members:
            member.done += 1
            member.compute_s += spent
            member.calls += 1
            member.call_rows += rows
            preview = previews.get(id(member))
            wanted = (
                member.item.on_step(member.done, member.total, preview)
                if preview is not None
                else member.item.on_step(member.done, member.total)
            )
            if not wanted:
                left.append(member)
            elif member.done >= member.total:
                finished.append(member)
            else:
                staying.append(member)
        if not finished and not left:
            return []
        retired = [Retired(m.item, _constant(None)) for m in left]
        retired += self._decode(finished)
        self._keep(staying)
        return retired

    def _advance(self, state: RowTensors) -> tuple[torch.Tensor, dict[int, str]]:
        """One model call over every row: the next latents, and the previews due at this step."""
        at = state.position.unsqueeze(1)
        sigma = state.sigmas.gather(1, at).squeeze(1)
        sigma_next = state.sigmas.gather(1, at + 1).squeeze(1)
        # As the stock loop: the timestep in the latents' dtype, divided by 1000 for the model.
        timestep = state.timesteps.gather(1, at).squeeze(1).to(state.latents.dtype)
        noise = self._predict(state, timestep, state.pooled, state.embeds)
        if self.shape.true_cfg:
            neg_noise = self._predict(state, timestep, state.neg_pooled, state.neg_embeds)
            noise = neg_noise + TRUE_CFG_SCALE * (noise - neg_noise)
        previews = self._previews(state.latents, sigma, noise)
        # FlowMatchEulerDiscreteScheduler.step, per row: the sample upcast to float32, plus the
        # step size (a float32 scalar there, so the product is taken in the model's dtype) times
        # the prediction, cast back to the model's dtype.
        step_size = (sigma_next - sigma).to(noise.dtype)[:, None, None]
        latents = (state.latents.to(torch.float32) + step_size * noise).to(noise.dtype)
        return latents, previews

    def _predict(
        self, state: RowTensors, timestep: torch.Tensor, pooled: Any, embeds: Any
    ) -> torch.Tensor:
        noise: torch.Tensor = self._pipe.transformer(
            hidden_states=state.latents,
            timestep=timestep / 1000,
            guidance=state.guidance,
            pooled_projections=pooled,
            encoder_hidden_states=embeds,
            txt_ids=self._text_ids,
            img_ids=self._image_ids,
            return_dict=False,
        )[0]
        return noise

    def _previews(
        self, latents: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor
    ) -> dict[int, str]:
        """Previews of the members that asked for one at this step: the model's current estimate
        of the final latents (x0 = x_t - sigma * v, flow matching), first image of each."""
        if self._previewer is None:
            return {}
        due: list[tuple[_Member, int]] = []
        row = 0
        for member in self._members:
            asks = member.item.preview_due
            if asks is not None and asks(member.done + 1, member.total):
                due.append((member, row))
            row += member.rows
        if not due:
            return {}
        rows = [r for _, r in due]
        images = self._previewer.estimates(
            latents, sigma, noise, rows, self.shape.width, self.shape.height
        )
        if images is None:
            return {}
        return {id(member): image for (member, _), image in zip(due, images, strict=True)}

    # --- leaving --------------------------------------------------------------------------------

    def _rows_of(self, members: list[_Member]) -> torch.Tensor:
        wanted = {id(m) for m in members}
        rows: list[int] = []
        row = 0
        for member in self._members:
            if id(member) in wanted:
                rows.extend(range(row, row + member.rows))
            row += member.rows
        return torch.tensor(rows, dtype=torch.long, device=self._device)

    def _keep(self, members: list[_Member]) -> None:
        """Drop every row but `members`' (one index tensor per change of membership)."""
        if not members:
            self._members, self._state = [], None
            return
        assert self._state is not None
        self._state = self._state.select(self._rows_of(members))
        self._members = members

    def _decode(self, members: list[_Member]) -> list[Retired]:
        """VAE-decode the finished members' rows together (one member at a time if that does not
        fit; a member that does not fit alone fails with `out_of_memory`)."""
        if not members:
            return []
        assert self._state is not None
        started = time.perf_counter()
        latents = self._state.latents.index_select(0, self._rows_of(members))
        try:
            images = decode_images(self._pipe, latents, self.shape.width, self.shape.height)
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            if len(members) > 1:
                return [r for m in members for r in self._decode([m])]
            error = InferenceError(code="out_of_memory", message=str(exc)[:300])
            return [Retired(members[0].item, _constant(error))]
        spent = time.perf_counter() - started
        retired = []
        for member in members:
            mine, images = images[: member.rows], images[member.rows :]
            retired.append(self._finished(member, mine, spent))
        return retired

    def _finished(self, member: _Member, images: list[Any], decode_s: float) -> Retired:
        compute_s = member.compute_s + decode_s
        images_per_call = max(1, round(member.call_rows / max(1, member.calls)))
        make = self._make_result

        def finish() -> ItemOutcome:
            return make(member.item, images, member.seeds, compute_s, images_per_call)

        return Retired(member.item, finish)

    # --- out of memory --------------------------------------------------------------------------

    def split(self) -> FluxStepGroup:
        half = max(1, len(self._members) // 2)
        moving = self._members[half:]
        other = FluxStepGroup(
            self._pipe,
            self.shape,
            device=self._device,
            schedules=self._schedules,
            previewer=self._previewer,
            make_result=self._make_result,
            init_image=self._init_image,
            step_delay_s=self._step_delay_s,
            test_oom_above_rows=self._test_oom_above_rows,
            binding=self._binding,
        )
        if moving:
            assert self._state is not None
            other._state = self._state.select(self._rows_of(moving))
            other._members = moving
            other._text_ids = self._text_ids
            self._keep(self._members[:half])
        return other

    def fail(self, error: InferenceError) -> list[Retired]:
        retired = [Retired(m.item, _constant(error)) for m in self._members]
        self._keep([])
        return retired


def _constant(outcome: ItemOutcome) -> Callable[[], ItemOutcome]:
    return lambda: outcome
