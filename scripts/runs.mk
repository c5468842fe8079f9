# What scripts/results.mk and scripts/default_model.mk share: the command that trains one recipe
# and the FSDD audio specialist, which both use (the default model's audio encoder starts from it).
# `$(call train,RECIPE,OUT,mmg-train arguments)` trains quietly (held-out top-1 only after each
# stage's last epoch) on THREADS torch threads, prints its wall time, and resumes from OUT when
# it was interrupted. A finished run (its model.safetensors) is not trained again.
FSDD ?= ../shared/data/fsdd
RUNS ?= runs
BIN ?= .venv/bin
THREADS ?= 1
comma := ,
# mmg-eval and the trainer's helpers read the thread count from the environment
export OMP_NUM_THREADS := $(THREADS)

define train
@echo "== $(1) -> $(2)"
@/usr/bin/time -f "   $(1) -> $(2): %e s" $(BIN)/mmg-train $(1) --quiet --eval-every 0 --threads $(THREADS) --out $(2) $(3)
endef

$(RUNS)/fsdd/audio/model.safetensors:
	$(call train,unimodal_audio,$(@D),--dataset fsdd --data $(FSDD))
