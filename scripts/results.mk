# Every training run and table of docs/results.md as make targets, so that `make -j2` runs two
# at a time, each on one torch thread: two one-thread runs side by side get more out of 2 cores
# than one two-thread run after another (an FSDD epoch: 60 s at two threads alone, 85 s at one
# thread next to another run). Run through scripts/reproduce_utd.sh.
# The schedule is two lanes of about equal length (one-thread times measured side by side on a
# 2-core machine, 2026-11-28, 41 min 4 s in all; the FSDD table and late-fusion scores take the
# first free slot):
#   lane 1: IMU (198 s) -> video (803) -> regular (366) -> missing (240) -> MLP (321)
#           -> no-alignment (340)
#   lane 2: FSDD (749; 1667 with the previous audio stem) -> few-shot (1026) -> zero-shot (517)
# then the pose runs (issue 28; the first one extracts the UTD-MHAD pose into the clip cache:
# ~45 min on one thread when the cache is cold, a few seconds when warm):
#   lane 1: pose specialist -> pose + IMU;   lane 2: few-shot pose + IMU
# A run's prerequisites are the checkpoints it starts from plus the run before it in its lane
# (marked "lane"): make -j starts whatever is ready in list order, so without the lanes an
# independent run would take the slot the IMU -> video chain needs next.
# A finished run (its model.safetensors) is not trained again; an interrupted one resumes.
# Prerequisites are order-only (after `|`): a newer input checkpoint does not retrain a run.
# The train command and the FSDD audio run (shared with the default model): scripts/runs.mk.
include $(dir $(lastword $(MAKEFILE_LIST)))runs.mk
.DEFAULT_GOAL := all
UTD ?= ../shared/data/utd-mhad
ABLATE_DISTILLATION ?= 0
TABLES ?= docs/results
TABLE_THREADS ?= 2
U := --dataset utd-mhad --data $(UTD)
R := $(RUNS)/utd
SPECIALISTS := --set init.0.checkpoint=$(R)/video/model.safetensors --set init.1.checkpoint=$(R)/imu/model.safetensors
PLAIN := $(if $(filter 1,$(ABLATE_DISTILLATION)),$(R)/video-plain/model.safetensors)

.PHONY: all $(TABLES)/utd-mhad/tables.md $(TABLES)/fsdd/tables.md $(TABLES)/utd-mhad/late_fusion.jsonl \
  $(TABLES)/utd-mhad/pose.jsonl
all: $(RUNS)/fsdd/audio/model.safetensors \
     $(foreach r,imu video regular missing fewshot mlp noalign zeroshot $(if $(PLAIN),video-plain),$(R)/$(r)/model.safetensors) \
     $(TABLES)/fsdd/tables.md $(TABLES)/utd-mhad/late_fusion.jsonl $(TABLES)/utd-mhad/tables.md \
     $(TABLES)/utd-mhad/pose.jsonl

$(R)/imu/model.safetensors:
	$(call train,unimodal_imu,$(@D),$(U))
$(R)/video/model.safetensors: | $(R)/imu/model.safetensors
	$(call train,unimodal_video,$(@D),$(U) --set init.0.checkpoint=$(R)/imu/model.safetensors)
# optional (ABLATE_DISTILLATION=1): the video specialist without the IMU term
$(R)/video-plain/model.safetensors: | $(R)/zeroshot/model.safetensors # lane
	$(call train,unimodal_video,$(@D),$(U) --set 'init=[]' --set 'modalities=["video"]' \
	  --set 'stages.0.modalities=["video"]' --set 'stages.0.label_modalities=null' --set stages.0.align_weight=0 \
	  --set stages.0.distill_weight=0 --set 'stages.0.freeze=[]' \
	  --set 'table.label="ablation: video specialist without IMU distillation"')
$(R)/regular/model.safetensors: | $(R)/video/model.safetensors
	$(call train,manyshot_regular,$(@D),$(U) $(SPECIALISTS))
$(R)/missing/model.safetensors: | $(R)/video/model.safetensors $(R)/regular/model.safetensors # lane
	$(call train,manyshot_missing,$(@D),$(U) $(SPECIALISTS))
$(R)/mlp/model.safetensors: | $(R)/video/model.safetensors $(R)/missing/model.safetensors # lane
	$(call train,manyshot_regular,$(@D),$(U) $(SPECIALISTS) --set 'fusion={"kind": "mlp"$(comma) "dim": 128}' \
	  --set 'table.label="ablation: MLP fusion"')
$(R)/noalign/model.safetensors: | $(R)/video/model.safetensors $(R)/mlp/model.safetensors # lane
	$(call train,manyshot_regular,$(@D),$(U) $(SPECIALISTS) --set stages.0.align_weight=0 \
	  --set 'table.label="ablation: no alignment loss"')
$(R)/zeroshot/model.safetensors: | $(R)/imu/model.safetensors $(R)/fewshot/model.safetensors # lane
	$(call train,manyshot_zeroshot,$(@D),$(U) --set init.0.checkpoint=$(R)/imu/model.safetensors)
$(R)/fewshot/model.safetensors: | $(RUNS)/fsdd/audio/model.safetensors # lane
	$(call train,fewshot_meta,$(@D),$(U))

# the tables are made again on every call; the UTD one comes last, when nothing else runs
UTD_TABLE_RUNS := video $(if $(PLAIN),video-plain) imu regular missing mlp noalign zeroshot fewshot
$(TABLES)/utd-mhad/tables.md: | $(foreach r,$(UTD_TABLE_RUNS),$(R)/$(r)/model.safetensors)
	@echo "== table utd-mhad"
	@OMP_NUM_THREADS=$(TABLE_THREADS) /usr/bin/time -f "   table utd-mhad: %e s" $(BIN)/mmg-eval table $(U) --out $(@D) \
	  $(foreach r,$(UTD_TABLE_RUNS),--checkpoint $(R)/$(r)/model.safetensors) \
	  --checkpoint $(R)/fewshot/stage-base-video.safetensors
$(TABLES)/fsdd/tables.md: | $(RUNS)/fsdd/audio/model.safetensors
	@echo "== table fsdd"
	@/usr/bin/time -f "   table fsdd: %e s" $(BIN)/mmg-eval table --dataset fsdd --data $(FSDD) --out $(@D) \
	  --checkpoint $(RUNS)/fsdd/audio/model.safetensors
# late fusion: the fused classifier and the unimodal heads together, no retraining
$(TABLES)/utd-mhad/late_fusion.jsonl: | $(R)/regular/model.safetensors $(R)/missing/model.safetensors
	@echo "== late-fusion scoring"
	@mkdir -p $(@D) && rm -f $@.part
	@for run in regular missing; do for mods in video,imu imu video; do \
	  printf '{"run": "%s", "modalities": "%s", "result": %s}\n' "$$run" "$$mods" "$$($(BIN)/mmg-eval accuracy \
	    --checkpoint $(R)/$$run/model.safetensors $(U) --modalities $$mods --classifier ensemble --json)" >> $@.part \
	  || exit 1; done; done
	@mv $@.part $@ && cat $@

# pose: specialist, pose + IMU (from the pose and IMU specialists), few-shot with pose
$(R)/pose/model.safetensors: | $(R)/noalign/model.safetensors # lane
	$(call train,unimodal_pose,$(@D),$(U))
$(R)/pose_imu/model.safetensors: | $(R)/pose/model.safetensors $(R)/imu/model.safetensors # lane
	$(call train,manyshot_pose_imu,$(@D),$(U) --set init.0.checkpoint=$(R)/pose/model.safetensors \
	  --set init.1.checkpoint=$(R)/imu/model.safetensors)
$(R)/fewshot_pose/model.safetensors: | $(R)/zeroshot/model.safetensors $(R)/pose/model.safetensors # lane
	$(call train,fewshot_pose_meta,$(@D),$(U))
# one JSON line per score: many-shot top-1 (fused and late fusion) and 5-way 5-shot on the novel classes
POSE_ACCURACY := pose:pose:fused pose_imu:pose:fused pose_imu:imu:fused pose_imu:pose,imu:fused pose_imu:pose,imu:ensemble
POSE_FEWSHOT := pose:pose pose:imu imu:pose imu:imu pose,imu:pose,imu
$(TABLES)/utd-mhad/pose.jsonl: | $(R)/pose/model.safetensors $(R)/pose_imu/model.safetensors $(R)/fewshot_pose/model.safetensors
	@echo "== pose scores"
	@mkdir -p $(@D) && rm -f $@.part
	@for row in $(POSE_ACCURACY); do set -- $$(echo "$$row" | tr : ' '); run=$$1 mods=$$2 cls=$$3; \
	  printf '{"run": "%s", "modalities": "%s", "classifier": "%s", "result": %s}\n' "$$run" "$$mods" "$$cls" \
	    "$$($(BIN)/mmg-eval accuracy --checkpoint $(R)/$$run/model.safetensors $(U) --modalities $$mods \
	        --classifier $$cls --json)" >> $@.part || exit 1; done
	@for row in $(POSE_FEWSHOT); do set -- $$(echo "$$row" | tr : ' '); sup=$$1 qry=$$2; \
	  printf '{"run": "fewshot_pose", "support": "%s", "query": "%s", "result": %s}\n' "$$sup" "$$qry" \
	    "$$($(BIN)/mmg-eval fewshot --checkpoint $(R)/fewshot_pose/model.safetensors $(U) --support $$sup \
	        --query $$qry --episodes 600 --json)" >> $@.part || exit 1; done
	@mv $@.part $@ && cat $@
