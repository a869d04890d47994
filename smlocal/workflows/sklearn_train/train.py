"""Entry point of the sklearn-train workflow: the SageMaker script-mode contract, nothing smlocal-specific."""

import argparse
import glob
import os

import joblib
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-estimators", type=int, default=50)
    parser.add_argument("--max-depth", type=int, default=4)
    args = parser.parse_args()

    files = glob.glob(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "*.csv"))
    frame = pd.concat(pd.read_csv(f, header=None) for f in files)
    y, X = frame.iloc[:, 0], frame.iloc[:, 1:]
    model = RandomForestClassifier(n_estimators=args.n_estimators, max_depth=args.max_depth, random_state=0)
    model.fit(X, y)
    print(f"train_accuracy={model.score(X, y):.4f}")
    joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
