# Leave-one-out cross-validation of a random forest on mtcars (a data set R ships):
# task i fits a forest on every car but car i, predicts car i's mpg, prints the prediction
# as one JSON value (the task's result, with --output json) and saves its model in the
# task's output directory (kept with the result: cheerful results JOB --files DIR).
suppressPackageStartupMessages(library(randomForest))

i <- as.integer(Sys.getenv("i"))           # the env of the task, as environment variables
data <- mtcars
set.seed(i)                                # one reproducible forest per task
fit <- randomForest(mpg ~ ., data = data[-i, ], ntree = 200)
predicted <- predict(fit, newdata = data[i, ])

out <- Sys.getenv("CHEERFUL_OUTPUT_DIR", ".")
saveRDS(fit, file.path(out, "model.rds"))

cat(sprintf('{"i": %d, "car": "%s", "mpg": %.1f, "predicted": %.3f}\n',
            i, rownames(data)[i], data$mpg[i], predicted))
