# The app's default model (mmg_live/assets/default.safetensors) and its model card, from the real
# recordings, as make targets; run through scripts/make_default_model.sh (= make default-model).
# Two runs side by side on one torch thread each, as in scripts/results.mk:
#   lane 1: IMU specialist -> video specialist (IMU-distilled) -> pose specialist -> video+IMU+pose
#           (default_utd), all on the 21 base classes (the 6 novel classes stay unseen: they are the
#           demo's custom actions) plus the "no action" class learned from still clips
#   lane 2: the FSDD audio specialist (the same run as `make results`: kept when it exists)
# then the fusion's audio entry (needs both lanes), the merge and the model card, which are made
# again on every call. Finished runs are not trained again; an interrupted one resumes.
# Any wrist mounting: every run that reads the IMU sees it in the gravity frame (ImuSpec.frame,
# computed from the window alone, live the same way) and trains with random turns about gravity
# (imu_yaw 180) instead of small random tilts; default_utd keeps the IMU specialist's parts frozen
# (docs/results.md, "Mounting", measured the choices).
include $(dir $(lastword $(MAKEFILE_LIST)))runs.mk
.DEFAULT_GOAL := all
UTD ?= ../shared/data/utd-mhad
ASSETS ?= mmg_live/assets
CARD_THREADS ?= 2
U := --dataset utd-mhad --data $(UTD) --set 'classes="base"' --set idle_class=true
G := --set 'specs={"imu": {"frame": "gravity"}}'
# the IMU specialist's parts stay as trained in default_utd: training them on with the other
# modalities cost 9 points of IMU-only accuracy (docs/results.md, "Mounting")
IMU_PARTS := ["encoders.imu", "projections.imu", "unimodal_heads.imu"]
D := $(RUNS)/default

.PHONY: all $(ASSETS)/default.safetensors
all: $(RUNS)/fsdd/audio/model.safetensors $(D)/imu/model.safetensors $(ASSETS)/default.safetensors

$(D)/imu/model.safetensors:
	$(call train,unimodal_imu,$(@D),$(U) $(G) --set stages.0.imu_rotation=0 --set stages.0.imu_yaw=180)
$(D)/video/model.safetensors: | $(D)/imu/model.safetensors
	$(call train,unimodal_video,$(@D),$(U) $(G) --set init.0.checkpoint=$(D)/imu/model.safetensors)
$(D)/pose/model.safetensors: | $(D)/video/model.safetensors
	$(call train,unimodal_pose,$(@D),$(U))
$(D)/utd/model.safetensors: | $(D)/video/model.safetensors $(D)/imu/model.safetensors $(D)/pose/model.safetensors
	$(call train,default_utd,$(@D),--dataset utd-mhad --data $(UTD) $(G) \
	  --set stages.0.imu_yaw=180 --set stages.1.imu_yaw=180 --set 'stages.*.freeze=$(IMU_PARTS)' \
	  --set init.0.checkpoint=$(D)/video/model.safetensors --set init.1.checkpoint=$(D)/imu/model.safetensors \
	  --set init.2.checkpoint=$(D)/pose/model.safetensors)
# the audio encoder and the fusion's audio entry, every shared weight frozen
$(D)/audio/model.safetensors: | $(D)/utd/model.safetensors $(RUNS)/fsdd/audio/model.safetensors
	$(call train,default_audio_fusion,$(@D),--dataset fsdd --data $(FSDD) \
	  --set init.0.checkpoint=$(D)/utd/model.safetensors --set init.1.checkpoint=$(RUNS)/fsdd/audio/model.safetensors)

# merge (refuses if a shared weight changed), measure, write the card
$(ASSETS)/default.safetensors: | $(D)/utd/model.safetensors $(D)/audio/model.safetensors
	@echo "== compose -> $@"
	@OMP_NUM_THREADS=$(CARD_THREADS) $(BIN)/python -m trainer.compose $(D)/utd/model.safetensors \
	  $(D)/audio/model.safetensors --modality audio --classifier ensemble --out $@
	@echo "== model card"
	@OMP_NUM_THREADS=$(CARD_THREADS) /usr/bin/time -f "   model card: %e s" $(BIN)/python -m trainer.model_card $@ \
	  --utd $(UTD) --fsdd $(FSDD) --out-dir $(ASSETS) >/dev/null
	@echo "wrote $@, $(ASSETS)/MODEL_CARD.md, $(ASSETS)/model_card.json"
