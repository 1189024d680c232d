"""Evaluation of generated samples against real data: feature extractors, FID, precision/recall,
semivariograms, power spectra, memorisation, the one-call report and its figures."""
