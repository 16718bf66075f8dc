// Command strategyq-producer is a Go backend's side of strategyq: it pushes a
// backtest and a screen onto strategy_queue exactly as encoding/json writes
// them, waits for each result without polling, and prints the results.
//
// Waiting: a worker that writes a terminal result (completed, error,
// cancelled) also pushes one token onto the list strategyq:done:{task_id}
// (kept 300 s). The producer reads task_result:{task_id} once; if it is not
// terminal yet it BLPOPs that list, which returns the moment the result is
// written, puts the token back for any other waiter, and reads the result.
//
// Build (GOPATH mode, with Debian's golang-go and golang-github-gomodule-redigo-dev):
//
//	GO111MODULE=off GOPATH=$PWD/examples/go:/usr/share/gocode go build -o producer strategyq-producer
//
// Run:
//
//	REDIS_URL=redis://:password@cache:6379/0 ./producer -backtest gap_up.py -screen momentum_screen.py
//
// With -tenant NAME (and -priority LANE) the tasks carry the optional "tenant" and
// "priority" fields: tenants are served in turn and have quotas (docs/queue.md). A
// task over its tenant's quota gets an error result with error_type "quota_exceeded".
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

const (
	queueName    = "strategy_queue"
	resultPrefix = "task_result:"
	donePrefix   = "strategyq:done:"
)

func main() {
	backtestFile := flag.String("backtest", "", "strategy file for the backtest")
	screenFile := flag.String("screen", "", "strategy file for the screen")
	symbols := flag.String("symbols", "AAPL,MSFT,GOOG", "backtest symbols, comma-separated")
	universe := flag.String("universe", "AAPL,MSFT,GOOG,IBM,FB", "screen universe, comma-separated")
	start := flag.String("start", "2010-01-01", "backtest start date (YYYY-MM-DD)")
	end := flag.String("end", "2012-12-31", "backtest end date (YYYY-MM-DD)")
	limit := flag.Int("limit", 5, "screen results to return")
	prefix := flag.String("id-prefix", fmt.Sprintf("go-%d", time.Now().UnixNano()), "task id prefix")
	timeout := flag.Duration("timeout", 120*time.Second, "how long to wait for each result")
	tenant := flag.String("tenant", "", "whose tasks these are (optional; default tenant \"default\")")
	priority := flag.String("priority", "", "lane of both tasks (optional; a screen defaults to interactive, a backtest to batch)")
	flag.Parse()
	if *backtestFile == "" || *screenFile == "" {
		fail(errors.New("name both strategies: -backtest FILE -screen FILE"))
	}
	conn, err := dial()
	if err != nil {
		fail(fmt.Errorf("cannot connect to Redis: %w", err))
	}
	defer conn.Close()

	startDate, err := time.Parse("2006-01-02", *start)
	if err != nil {
		fail(fmt.Errorf("-start: %w", err))
	}
	endDate, err := time.Parse("2006-01-02", *end)
	if err != nil {
		fail(fmt.Errorf("-end: %w", err))
	}
	endDate = endDate.Add(24*time.Hour - time.Second)

	backtestID := *prefix + "-backtest"
	screenID := *prefix + "-screen"
	tasks := []map[string]interface{}{
		{
			"task_id":   backtestID,
			"task_type": "backtest",
			"args": map[string]interface{}{
				"strategy_code": read(*backtestFile),
				"symbols":       split(*symbols),
				"start_date":    startDate.Format(time.RFC3339),
				"end_date":      endDate.Format(time.RFC3339),
			},
		},
		{
			"task_id":   screenID,
			"task_type": "screening",
			"args": map[string]interface{}{
				"strategy_code": read(*screenFile),
				"universe":      split(*universe),
				"limit":         *limit,
			},
		},
	}
	for _, task := range tasks {
		// Optional top-level fields: without them a task is tenant "default" in its type's lane.
		if *tenant != "" {
			task["tenant"] = *tenant
		}
		if *priority != "" {
			task["priority"] = *priority
		}
		taskJSON, err := json.Marshal(task)
		if err != nil {
			fail(err)
		}
		if _, err := conn.Do("LPUSH", queueName, taskJSON); err != nil {
			fail(fmt.Errorf("LPUSH: %w", err))
		}
		fmt.Printf("queued %s %s\n", task["task_type"], task["task_id"])
	}
	status := 0
	for _, id := range []string{backtestID, screenID} {
		result, err := waitForResult(conn, id, *timeout)
		if err != nil {
			fail(err)
		}
		if !printResult(id, result) {
			status = 1
		}
	}
	os.Exit(status)
}

// dial connects with REDIS_URL, or the seed's REDIS_HOST / REDIS_PORT / REDIS_PASSWORD.
func dial() (redis.Conn, error) {
	if url := os.Getenv("REDIS_URL"); url != "" {
		return redis.DialURL(url)
	}
	host := getenv("REDIS_HOST", "127.0.0.1")
	port := getenv("REDIS_PORT", "6379")
	return redis.Dial("tcp", host+":"+port, redis.DialPassword(os.Getenv("REDIS_PASSWORD")))
}

// waitForResult returns the task's terminal result, blocking on its done list
// between reads instead of polling.
func waitForResult(conn redis.Conn, id string, timeout time.Duration) (map[string]interface{}, error) {
	deadline := time.Now().Add(timeout)
	for {
		result, err := getResult(conn, id)
		if err != nil {
			return nil, err
		}
		if result != nil && terminal(result["status"]) {
			return result, nil
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return nil, fmt.Errorf("task %s: no result within %s", id, timeout)
		}
		seconds := math.Max(1, math.Ceil(remaining.Seconds()))
		reply, err := redis.Strings(conn.Do("BLPOP", donePrefix+id, seconds))
		if err == redis.ErrNil {
			continue // timed out: the loop reads once more, then gives up
		}
		if err != nil {
			return nil, fmt.Errorf("BLPOP: %w", err)
		}
		// Put the token back for any other waiter on the same task.
		if _, err := conn.Do("RPUSH", donePrefix+id, reply[1]); err != nil {
			return nil, fmt.Errorf("RPUSH: %w", err)
		}
	}
}

func getResult(conn redis.Conn, id string) (map[string]interface{}, error) {
	raw, err := redis.Bytes(conn.Do("GET", resultPrefix+id))
	if err == redis.ErrNil {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("GET: %w", err)
	}
	var result map[string]interface{}
	if err := json.Unmarshal(raw, &result); err != nil {
		return nil, fmt.Errorf("task %s: result is not JSON: %w", id, err)
	}
	return result, nil
}

func terminal(status interface{}) bool {
	switch status {
	case "completed", "error", "cancelled":
		return true
	}
	return false
}

// printResult prints one line per task and reports whether it completed.
func printResult(id string, result map[string]interface{}) bool {
	data, _ := result["data"].(map[string]interface{})
	if result["status"] != "completed" {
		fmt.Printf("%s %s: %v (%v)\n", id, result["status"], data["error"], data["error_type"])
		return false
	}
	switch data["execution_mode"] {
	case "backtest":
		metrics, _ := data["performance_metrics"].(map[string]interface{})
		instances, _ := data["instances"].([]interface{})
		fmt.Printf("%s completed: backtest, %d signals, total_return %v, win_rate %v\n",
			id, len(instances), metrics["total_return"], metrics["win_rate"])
	case "screening":
		ranked, _ := data["ranked_results"].([]interface{})
		tickers := make([]string, 0, len(ranked))
		for _, r := range ranked {
			if row, ok := r.(map[string]interface{}); ok {
				tickers = append(tickers, fmt.Sprint(row["ticker"]))
			}
		}
		fmt.Printf("%s completed: screening, %d results: %s\n", id, len(ranked), strings.Join(tickers, ","))
	default:
		fmt.Printf("%s completed: %v\n", id, data["execution_mode"])
	}
	return true
}

func read(path string) string {
	code, err := os.ReadFile(path)
	if err != nil {
		fail(err)
	}
	return string(code)
}

func split(list string) []string {
	var out []string
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func getenv(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "error:", err)
	os.Exit(2)
}
