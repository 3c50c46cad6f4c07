"""Theory toys: exact toy teachers and conditional mutual information estimators for the theory chapters."""
