"""Statistics of radar fields shared by the generators and the evaluation: analytic covariances, spectra, semivariograms."""
