"""The paper's Table I baselines in plain torch: 3D CNNs on CT volumes, point networks on point
clouds from depth images. Reduced in width and input size to train on a CPU (see each module);
trained and evaluated by ``evaluate.harness`` like ctface's own model."""
